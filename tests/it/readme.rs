//! README's behaviour, fault and limit tables name the tests behind each row. A renamed or
//! moved test must not leave a row pointing at nothing: every `module::test` they cite exists.

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The source file(s) a cited module path lives in.
fn sources(module: &str) -> Vec<String> {
    let candidates = [
        format!("tests/it/{module}.rs"),
        format!("tests/{module}.rs"),
        format!("src/{module}.rs"),
        format!("src/{module}/mod.rs"),
        format!("src/{}.rs", module.replace("::", "/")),
    ];
    candidates
        .iter()
        .filter_map(|path| std::fs::read_to_string(Path::new(ROOT).join(path)).ok())
        .collect()
}

#[test]
fn every_test_the_readme_cites_exists() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README");
    let mut checked = 0;
    for cited in readme.split('`').skip(1).step_by(2) {
        // Only `module::test_name` citations, with `…` or `*` standing for the rest of a name.
        let Some((module, name)) = cited.rsplit_once("::") else {
            continue;
        };
        let module = module.trim_end_matches("::tests");
        let looks_like_test = name.len() > 12
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_…*".contains(c))
            && module
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == ':');
        if !looks_like_test {
            continue;
        }
        let files = sources(module);
        assert!(
            !files.is_empty(),
            "README cites {cited:?}: no module {module}"
        );
        let pattern: Vec<&str> = name.split(['…', '*']).filter(|p| !p.is_empty()).collect();
        let found = files.iter().any(|text| {
            text.split("fn ").skip(1).any(|rest| {
                let function = rest.split('(').next().unwrap_or("");
                let mut at = 0;
                pattern.iter().all(|part| match function[at..].find(part) {
                    Some(i) if at > 0 || i == 0 => {
                        at += i + part.len();
                        true
                    }
                    _ => false,
                }) && (name.ends_with(['…', '*']) || at == function.len())
            })
        });
        assert!(
            found,
            "README cites {cited:?}, which no test in {module} is"
        );
        checked += 1;
    }
    assert!(
        checked > 50,
        "only {checked} citations found: is the README still citing tests?"
    );
}
