//! README's behaviour tables and SECURITY.md's hostile input, fault and limit tables name the
//! tests behind each row. A renamed or moved test must not leave a row pointing at nothing: every
//! `module::test` either document cites exists. Nor may a citation drift from its claim: every
//! test a Hostile input, Faults or Limits row cites mentions the row's key figures (see
//! [`key_figures`]).

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The documents whose citations are checked: README.md, and SECURITY.md, which holds the
/// Hostile input, Faults and Limits tables.
const DOCUMENTS: [&str; 2] = ["README.md", "SECURITY.md"];

/// A document of the repository's root, by name.
fn document(name: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The source file(s) a cited module path lives in.
fn sources(module: &str) -> Vec<String> {
    let candidates = [
        format!("tests/it/{module}.rs"),
        format!("tests/{module}.rs"),
        // A module of a test target in a directory: `proxies_e2e::nginx::x` in
        // `tests/proxies_e2e/nginx.rs`.
        format!("tests/{}.rs", module.replace("::", "/")),
        format!("src/{module}.rs"),
        format!("src/{module}/mod.rs"),
        format!("src/{}.rs", module.replace("::", "/")),
        // A module's unit tests in a file of their own: `a::tests::x` in `src/a/tests.rs`.
        format!("src/{}/tests.rs", module.replace("::", "/")),
    ];
    candidates
        .iter()
        .filter_map(|path| std::fs::read_to_string(Path::new(ROOT).join(path)).ok())
        .collect()
}

#[test]
fn every_test_the_readme_cites_exists() {
    let mut checked = 0;
    for name in DOCUMENTS {
        let cited_here = citations_exist(name, &document(name));
        // Each document still cites tests: a check that finds none checks nothing.
        assert!(
            cited_here > 0,
            "{name} cites no test: is it still citing tests?"
        );
        checked += cited_here;
    }
    assert!(
        checked > 50,
        "only {checked} citations found: are README and SECURITY.md still citing tests?"
    );
}

/// Checks that every test `text` (the document `doc`) cites exists; the number checked.
fn citations_exist(doc: &str, text: &str) -> usize {
    let mut checked = 0;
    for cited in text.split('`').skip(1).step_by(2) {
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
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':');
        if !looks_like_test {
            continue;
        }
        let files = sources(module);
        assert!(
            !files.is_empty(),
            "{doc} cites {cited:?}: no module {module}"
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
        assert!(found, "{doc} cites {cited:?}, which no test in {module} is");
        checked += 1;
    }
    checked
}

/// A citation `module::name` (or `module::tests::name`), when it names a test: the
/// module path and the name, which may hold `…` or `*` for the rest of a name.
fn citation(cited: &str) -> Option<(&str, &str)> {
    let (module, name) = cited.rsplit_once("::")?;
    let module = module.trim_end_matches("::tests");
    let looks_like_test = name.len() > 12
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_…*".contains(c))
        && module
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':');
    looks_like_test.then_some((module, name))
}

/// The text of every function in `module` that `name` names (a `…` or `*` stands for any
/// characters): its doc comment and attributes, its signature and its body, up to the next item
/// at its own indentation.
fn cited_functions(module: &str, name: &str) -> Vec<String> {
    let pattern: Vec<&str> = name.split(['…', '*']).filter(|p| !p.is_empty()).collect();
    let open_ended = name.ends_with(['…', '*']);
    let matches = |function: &str| {
        let mut at = 0;
        pattern.iter().all(|part| match function[at..].find(part) {
            Some(i) if at > 0 || i == 0 => {
                at += i + part.len();
                true
            }
            _ => false,
        }) && (open_ended || at == function.len())
    };
    let mut found = Vec::new();
    for text in sources(module) {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            let Some(rest) = trimmed
                .strip_prefix("async fn ")
                .or_else(|| trimmed.strip_prefix("fn "))
            else {
                continue;
            };
            if !matches(rest.split(['(', '<']).next().unwrap_or("")) {
                continue;
            }
            let is_item_start = |l: &&str| {
                let t = l.trim_start();
                [
                    "///",
                    "#[",
                    "fn ",
                    "async fn ",
                    "pub ",
                    "const ",
                    "struct ",
                    "impl ",
                    "mod ",
                ]
                .iter()
                .any(|p| t.starts_with(p))
                    && l.len() - t.len() <= indent
            };
            let mut start = i;
            while start > 0 && {
                let t = lines[start - 1].trim_start();
                t.starts_with("///") || t.starts_with("#[")
            } {
                start -= 1;
            }
            let end = lines[i + 1..]
                .iter()
                .position(is_item_start)
                .map_or(lines.len(), |n| i + 1 + n);
            found.push(lines[start..end].join("\n"));
        }
    }
    found
}

/// The cells of a Markdown table row: split at `|` outside backticks, trimmed, without the
/// empty ends.
fn cells(row: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut in_code = false;
    for c in row
        .trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .chars()
    {
        match c {
            '`' => {
                in_code = !in_code;
                cells.last_mut().expect("a cell").push(c);
            }
            '|' if !in_code => cells.push(String::new()),
            _ => cells.last_mut().expect("a cell").push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// The backticked pieces of a cell, in order.
fn backticked(cell: &str) -> impl Iterator<Item = &str> {
    cell.split('`').skip(1).step_by(2)
}

/// The setting a backticked piece names, if it names one: its leading identifier (before ` =`),
/// written in lower case, starting with a letter, with at least one `_` (`jwks_max_bytes`,
/// `server.check_timeout_ms`; not a form field such as `_method`),
/// without its table (`max_concurrent_streams`): what a test's configuration spells.
fn setting(piece: &str) -> Option<&str> {
    let name = piece.split(" =").next().unwrap_or("").trim();
    let is_setting = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.contains('_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.".contains(c));
    is_setting.then(|| name.rsplit('.').next().unwrap_or(name))
}

/// A row's key figures, what every test it cites must mention:
///
/// - in the Limits table, the first setting in its `setting` column (see [`setting`]); where
///   that names none (`fixed`, `same`, `–`), every number in its `default` column, as digits
///   (`128` of "128 bytes", `16` of "16 KiB"; `32` and `256` of "32 and 256 bytes");
/// - in the Hostile input and Faults tables, the first setting backticked in its first
///   column, if there is one (`jwks_max_keys`, `reload_on_change`); a row naming none has no
///   key figure and is only checked for existing tests.
fn key_figures(table: &str, header: &[String], row: &[String]) -> Vec<String> {
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| row.get(i))
    };
    if table == "Limits" {
        if let Some(name) = column("setting").and_then(|c| backticked(c).find_map(setting)) {
            return vec![name.to_string()];
        }
        let default = column("default").map(String::as_str).unwrap_or("");
        // Numbers as written: `10,000` is one number.
        return default
            .split(|c: char| !(c.is_ascii_digit() || c == ','))
            .map(|n| n.trim_matches(',').replace(',', ""))
            .filter(|n| !n.is_empty())
            .collect();
    }
    backticked(row.first().map(String::as_str).unwrap_or(""))
        .find_map(setting)
        .map(str::to_string)
        .into_iter()
        .collect()
}

/// Whether `text` mentions `figure`: a setting anywhere, a number as a whole number (not a
/// part of a longer one; `10_000` for `10000` too).
fn mentions(text: &str, figure: &str) -> bool {
    if !figure.chars().all(|c| c.is_ascii_digit()) {
        return text.contains(figure);
    }
    let bytes = text.as_bytes();
    let mut numbers = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let mut number = String::new();
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
                if bytes[i] != b'_' {
                    number.push(bytes[i] as char);
                }
                i += 1;
            }
            numbers.push(number);
        } else {
            i += 1;
        }
    }
    numbers.iter().any(|n| n == figure)
}

#[test]
fn every_cited_test_mentions_its_rows_key_figure() {
    let security = document("SECURITY.md");
    let mut failures = Vec::new();
    let mut checked = 0;
    for table in ["Hostile input", "Faults", "Limits"] {
        let section = security
            .split(&format!("\n## {table}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("SECURITY.md has a {table} section"))
            .split("\n#")
            .next()
            .unwrap_or_default();
        let mut header: Vec<String> = Vec::new();
        let mut previous: Vec<(String, String)> = Vec::new();
        for line in section.lines() {
            if !line.starts_with('|') {
                header.clear();
                continue;
            }
            let row = cells(line);
            if header.is_empty() {
                header = row;
                continue;
            }
            if row.iter().all(|c| c.chars().all(|c| "-: ".contains(c))) {
                continue;
            }
            // Only the tables whose last column names tests.
            if header.last().map(String::as_str) != Some("tests") {
                continue;
            }
            let tests = row.last().map(String::as_str).unwrap_or("");
            let mut cited: Vec<(String, String)> = backticked(tests)
                .filter_map(citation)
                .map(|(m, n)| (m.to_string(), n.to_string()))
                .collect();
            // "same" (or "same, and …") stands for the row above's tests.
            if tests.starts_with("same") {
                cited.extend(previous.iter().cloned());
            }
            previous = cited.clone();
            let figures = key_figures(table, &header, &row);
            if figures.is_empty() {
                continue;
            }
            for (module, name) in &cited {
                let functions = cited_functions(module, name);
                for figure in &figures {
                    if functions.is_empty() || !functions.iter().all(|f| mentions(f, figure)) {
                        failures.push(format!(
                            "{table}: {module}::{name} does not mention {figure:?} (row: {})",
                            row.first().map(String::as_str).unwrap_or("")
                        ));
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "SECURITY.md rows cite tests that do not mention the row's key figure:\n{}",
        failures.join("\n")
    );
    assert!(checked > 30, "only {checked} citations checked");
}

#[test]
fn the_security_tables_live_only_in_security_md_and_the_readme_points_there() {
    let readme = document("README.md");
    let security = document("SECURITY.md");
    for table in ["Hostile input", "Faults", "Limits"] {
        assert!(
            security.contains(&format!("\n## {table}\n")),
            "SECURITY.md has a {table} section"
        );
        // One copy only: a second in README would drift from the checked one.
        for level in ["##", "###"] {
            assert!(
                !readme.contains(&format!("\n{level} {table}\n")),
                "README has a {table} section of its own; the table lives in SECURITY.md"
            );
        }
    }
    assert!(
        readme.contains("[SECURITY.md](SECURITY.md)"),
        "README links SECURITY.md"
    );
}
