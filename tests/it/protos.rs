//! `proto/`, the vendored sources of the reflection descriptors, must be exactly the import
//! closure of `envoy/service/auth/v3/external_auth.proto` in the `envoy-types` crate that
//! `Cargo.lock` pins (found with `cargo metadata`), so that reflection describes the messages the
//! service really decodes. After an envoy-types upgrade this fails until `scripts/update-protos`
//! is run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const ENTRY: &str = "envoy/service/auth/v3/external_auth.proto";
/// The include roots inside the crate's `proto/` directory, in the order they are searched.
const CRATE_ROOTS: [&str; 4] = ["data-plane-api", "xds", "googleapis", "protoc-gen-validate"];
/// Files in `proto/` that are not protos.
const NOT_PROTOS: [&str; 3] = ["README.md", "LICENSE", "SOURCE"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The locked envoy-types package: its version and its `proto/` directory.
fn locked_envoy_types() -> (String, PathBuf) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let host = crate::common::host_triple();
    // An external command could hang: bound this test as the fixtures bound theirs.
    crate::common::watchdog::arm();
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(repo())
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let packages: Vec<&serde_json::Value> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["name"] == "envoy-types")
        .collect();
    assert_eq!(packages.len(), 1, "exactly one envoy-types is locked");
    let manifest = PathBuf::from(
        packages[0]["manifest_path"]
            .as_str()
            .expect("manifest path"),
    );
    (
        packages[0]["version"]
            .as_str()
            .expect("version")
            .to_string(),
        manifest.parent().expect("crate dir").join("proto"),
    )
}

/// Every file imported from `ENTRY`, transitively (but `google/protobuf/*`, built into protox),
/// mapped to the crate include root it was found under.
fn closure(crate_protos: &Path) -> BTreeMap<String, &'static str> {
    let mut found = BTreeMap::new();
    let mut todo = vec![ENTRY.to_string()];
    while let Some(path) = todo.pop() {
        if found.contains_key(&path) || path.starts_with("google/protobuf/") {
            continue;
        }
        let root = CRATE_ROOTS
            .into_iter()
            .find(|root| crate_protos.join(root).join(&path).is_file())
            .unwrap_or_else(|| panic!("{path} is in none of the crate's include roots"));
        let text = std::fs::read_to_string(crate_protos.join(root).join(&path)).expect("read");
        for line in text.lines() {
            let line = line.trim_start();
            if let Some(rest) = line.strip_prefix("import ") {
                let rest = rest
                    .trim_start_matches("public ")
                    .trim_start_matches("weak ");
                if let Some(imported) = rest.split('"').nth(1) {
                    todo.push(imported.to_string());
                }
            }
        }
        found.insert(path, root);
    }
    found
}

fn files_under(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if entry.path().is_dir() {
            files_under(&entry.path(), &relative, out);
        } else {
            out.push(relative);
        }
    }
}

#[test]
fn vendored_protos_are_the_locked_envoy_types_protos() {
    let (version, crate_protos) = locked_envoy_types();
    let wanted = closure(&crate_protos);
    assert!(wanted.len() > 10, "{wanted:?}");

    let vendored = repo().join("proto");
    let mut present = Vec::new();
    files_under(&vendored, "", &mut present);
    present.retain(|f| !NOT_PROTOS.contains(&f.as_str()));
    present.sort();
    let wanted_names: Vec<&String> = wanted.keys().collect();
    assert_eq!(
        present.iter().collect::<Vec<_>>(),
        wanted_names,
        "proto/ must hold exactly the import closure of {ENTRY}; run scripts/update-protos"
    );
    for (path, root) in &wanted {
        let ours = std::fs::read(vendored.join(path)).expect("vendored file");
        let theirs = std::fs::read(crate_protos.join(root).join(path)).expect("crate file");
        assert!(
            ours == theirs,
            "proto/{path} differs from envoy-types {version}'s; run scripts/update-protos"
        );
    }
    let source = std::fs::read_to_string(vendored.join("SOURCE")).expect("proto/SOURCE");
    assert!(
        source.starts_with(&format!("envoy-types {version} ")),
        "proto/SOURCE names another version than the locked {version}: {source}"
    );
}

/// build.rs reads only `proto/`: no Cargo.lock parsing, no registry paths, no override variable.
#[test]
fn the_build_script_reads_only_the_vendored_tree() {
    let build = std::fs::read_to_string(repo().join("build.rs")).expect("build.rs");
    for needle in [
        "Cargo.lock",
        "CARGO_HOME",
        "registry",
        "SCOPEGATE_ENVOY_PROTO_DIR",
    ] {
        assert!(
            !build
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .any(|l| l.contains(needle)),
            "build.rs code mentions {needle}"
        );
    }
}
