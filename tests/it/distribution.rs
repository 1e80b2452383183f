//! What is distributed: the production build (`--no-default-features`) without the development
//! tools, and the release artifacts `scripts/release` writes to `dist/`: the stripped binary,
//! its checksums and the CycloneDX SBOM, which must list exactly the crates of the production
//! build's resolved dependency graph. `scripts/test` runs `scripts/release` first and points
//! these tests at its output with `SCOPEGATE_DIST_DIR`, so one release build serves both.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{clear_scopegate_env, host_triple, watchdog};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The crates only the development tools use: none may be in the production build.
const DEV_ONLY_CRATES: [&str; 2] = ["rcgen", "serde_urlencoded"];

/// The production subcommands, every one in the production binary.
const PRODUCTION_SUBCOMMANDS: [&str; 5] = [
    "serve",
    "check-config",
    "explain",
    "openapi-rules",
    "health",
];

/// The development subcommands, none in the production binary.
const DEV_SUBCOMMANDS: [&str; 5] = [
    "dev-issuer",
    "mint-token",
    "demo-upstream",
    "dev-certs",
    "dpop-proof",
];

fn cargo(args: &[&str]) -> Output {
    // An external command could hang: bound this test as the fixtures bound theirs.
    watchdog::arm();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(args)
        .args(["--locked", "--offline"])
        .current_dir(ROOT)
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "cargo {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The packages of `cargo tree -e normal` (what is linked into the binary) for the host.
fn normal_tree(features: &[&str]) -> BTreeSet<String> {
    let mut args = vec![
        "tree", "-e", "normal", "--prefix", "none", "--format", "{p}",
    ];
    args.extend_from_slice(features);
    let output = cargo(&args);
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// `cargo tree --no-default-features -e normal` has none of the development tools' crates;
/// the default build has them all (so this test sees them where they are).
#[test]
fn the_production_build_has_no_development_crates() {
    let production = normal_tree(&["--no-default-features"]);
    let default = normal_tree(&[]);
    assert!(production.contains("scopegate") && production.contains("tonic"));
    for name in DEV_ONLY_CRATES {
        assert!(
            !production.contains(name),
            "{name} is in the production build's dependency tree"
        );
        assert!(default.contains(name), "{name} is not in the default build");
    }
}

/// The directory `scripts/release` wrote.
fn dist() -> PathBuf {
    let dir = std::env::var_os("SCOPEGATE_DIST_DIR").unwrap_or_else(|| {
        panic!("SCOPEGATE_DIST_DIR is not set: run scripts/release and set it to its dist/ (scripts/test does both)")
    });
    PathBuf::from(dir)
}

fn binary_name() -> String {
    format!("scopegate-{VERSION}-{}", host_triple())
}

fn run(binary: &Path, args: &[&str]) -> Output {
    watchdog::arm();
    let mut command = Command::new(binary);
    clear_scopegate_env(&mut command);
    command.args(args).output().expect("run the release binary")
}

/// The release binary runs: `--version` names this version, `check-config` accepts the demo
/// configuration, every production subcommand is there and no development one: `dev-issuer`
/// and the others are unknown commands. It is stripped, and the checksum files verify.
#[test]
fn the_release_binary_runs_without_the_development_tools() {
    let dist = dist();
    let binary = dist.join(binary_name());
    assert!(binary.is_file(), "{} is missing", binary.display());

    let version = run(&binary, &["--version"]);
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("scopegate {VERSION}")
    );

    let demo = format!("{ROOT}/demo/scopegate.toml");
    let checked = run(&binary, &["check-config", "--config", &demo]);
    assert!(
        checked.status.success(),
        "check-config: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(String::from_utf8_lossy(&checked.stdout).contains("configuration OK"));

    for subcommand in PRODUCTION_SUBCOMMANDS {
        let help = run(&binary, &[subcommand, "--help"]);
        assert!(help.status.success(), "{subcommand} is missing");
    }
    for subcommand in DEV_SUBCOMMANDS {
        let refused = run(&binary, &[subcommand, "--help"]);
        assert_eq!(refused.status.code(), Some(2), "{subcommand} is accepted");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains(&format!("unrecognized subcommand '{subcommand}'")),
            "{subcommand}: {stderr}"
        );
    }

    // Stripped: no symbol table left.
    watchdog::arm();
    let sections = Command::new("readelf")
        .arg("-S")
        .arg(&binary)
        .output()
        .expect("readelf");
    assert!(sections.status.success());
    assert!(
        !String::from_utf8_lossy(&sections.stdout).contains(".symtab"),
        "the release binary is not stripped"
    );

    // Both checksum files verify, and SHA256SUMS covers every file beside it.
    watchdog::arm();
    for sums in [
        format!("{}.sha256", binary_name()),
        "SHA256SUMS".to_string(),
    ] {
        let check = Command::new("sha256sum")
            .args(["-c", "--strict", &sums])
            .current_dir(&dist)
            .output()
            .expect("sha256sum");
        assert!(
            check.status.success(),
            "{sums}: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let listed: BTreeSet<String> = std::fs::read_to_string(dist.join("SHA256SUMS"))
        .expect("SHA256SUMS")
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, name)| name.to_owned()))
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(&dist)
        .expect("dist")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != "SHA256SUMS")
        .collect();
    assert_eq!(listed, present);
}

/// `name@version` of a package of `cargo metadata`.
fn package_key(package: &Value) -> String {
    format!(
        "{}@{}",
        package["name"].as_str().expect("name"),
        package["version"].as_str().expect("version")
    )
}

/// The production build's resolved graph from `cargo metadata`: the crates reachable from
/// scopegate through normal dependencies (linked into the binary), and those reachable only
/// through a build dependency somewhere (build scripts and what they use). Dev-dependencies are
/// not followed.
fn resolved_graph(metadata: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let keys: BTreeMap<&str, String> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("id"), package_key(p)))
        .collect();
    let nodes: BTreeMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .map(|n| (n["id"].as_str().expect("id"), n))
        .collect();
    let root = metadata["resolve"]["root"].as_str().expect("root");
    let reach = |kinds: &[Option<&str>]| {
        let mut seen = BTreeSet::new();
        let mut todo = VecDeque::from([root]);
        while let Some(id) = todo.pop_front() {
            for dep in nodes[id]["deps"].as_array().expect("deps") {
                let followed = dep["dep_kinds"]
                    .as_array()
                    .expect("dep_kinds")
                    .iter()
                    .any(|k| kinds.contains(&k["kind"].as_str()));
                let next = dep["pkg"].as_str().expect("pkg");
                if followed && seen.insert(next) {
                    todo.push_back(next);
                }
            }
        }
        seen.into_iter()
            .map(|id| keys[id].clone())
            .collect::<BTreeSet<_>>()
    };
    let runtime = reach(&[None]);
    let with_build = reach(&[None, Some("build")]);
    let build_only = with_build.difference(&runtime).cloned().collect();
    (runtime, build_only)
}

/// The SBOM is CycloneDX JSON about scopegate at this version, and its components are exactly
/// the production build's resolved graph: scope `required` for the crates linked in, `excluded`
/// for the build-time-only ones, no dev-dependency and none of the development tools' crates.
#[test]
fn the_sbom_lists_exactly_the_production_dependency_graph() {
    let sbom_path = dist().join(format!("scopegate-{VERSION}.cdx.json"));
    let sbom: Value = serde_json::from_str(
        &std::fs::read_to_string(&sbom_path)
            .unwrap_or_else(|e| panic!("{}: {e}", sbom_path.display())),
    )
    .expect("SBOM JSON");
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["metadata"]["component"]["name"], "scopegate");
    assert_eq!(sbom["metadata"]["component"]["version"], VERSION);

    let mut required = BTreeSet::new();
    let mut excluded = BTreeSet::new();
    for component in sbom["components"].as_array().expect("components") {
        let key = format!(
            "{}@{}",
            component["name"].as_str().expect("name"),
            component["version"].as_str().expect("version")
        );
        match component["scope"].as_str() {
            Some("required") => required.insert(key),
            Some("excluded") => excluded.insert(key),
            other => panic!("{key}: scope {other:?}"),
        };
    }

    let host = host_triple();
    let metadata = cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--no-default-features",
        "--filter-platform",
        &host,
    ]);
    let metadata: Value = serde_json::from_slice(&metadata.stdout).expect("metadata JSON");
    let (runtime, build_only) = resolved_graph(&metadata);
    assert_eq!(required, runtime, "the crates linked into the binary");
    assert_eq!(excluded, build_only, "the build-time-only crates");
    for name in DEV_ONLY_CRATES
        .iter()
        .chain(&["jsonwebtoken", "criterion", "proptest"])
    {
        assert!(
            !required
                .iter()
                .chain(&excluded)
                .any(|k| k.starts_with(&format!("{name}@"))),
            "{name} is in the SBOM"
        );
    }
}
