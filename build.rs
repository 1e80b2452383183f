//! Compiles the protobuf descriptors that gRPC server reflection serves.
//!
//! Reflection must describe exactly the `envoy.service.auth.v3` messages that the `envoy-types`
//! crate was generated from, so the `.proto` sources are taken from that crate's own package
//! (it ships them under `proto/`) rather than from a copy kept here. `protox` is a pure-Rust
//! protobuf compiler, so no `protoc` is needed on the build machine.
//!
//! The crate is found in Cargo's registry source cache at the version pinned in `Cargo.lock`.
//! `SCOPEGATE_ENVOY_PROTO_DIR` overrides the search (for vendored or offline builds).

use std::env;
use std::path::{Path, PathBuf};

const ENTRY: &str = "envoy/service/auth/v3/external_auth.proto";
const INCLUDES: [&str; 4] = ["data-plane-api", "xds", "googleapis", "protoc-gen-validate"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-env-changed=SCOPEGATE_ENVOY_PROTO_DIR");

    let proto_root = match env::var_os("SCOPEGATE_ENVOY_PROTO_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => find_envoy_types_protos().unwrap_or_else(|why| panic!("{why}")),
    };
    let includes: Vec<PathBuf> = INCLUDES.iter().map(|dir| proto_root.join(dir)).collect();

    let mut compiler = protox::Compiler::new(&includes)
        .unwrap_or_else(|e| panic!("cannot read protos under {}: {e}", proto_root.display()));
    compiler.include_imports(true).include_source_info(false);
    compiler
        .open_file(ENTRY)
        .unwrap_or_else(|e| panic!("cannot compile {ENTRY}: {e}"));
    let bytes = compiler.encode_file_descriptor_set();

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("ext_authz_descriptor.bin"), bytes).expect("write descriptor set");
}

/// Finds `envoy-types-<version>/proto` in Cargo's registry source cache.
fn find_envoy_types_protos() -> Result<PathBuf, String> {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let lock = std::fs::read_to_string(manifest_dir.join("Cargo.lock"))
        .map_err(|e| format!("Cargo.lock is needed to find envoy-types' protos: {e}"))?;
    let version = locked_version(&lock, "envoy-types")
        .ok_or("Cargo.lock has no envoy-types package".to_string())?;

    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let registry_src = cargo_home.join("registry").join("src");
    let wanted = format!("envoy-types-{version}");
    let registries = std::fs::read_dir(&registry_src)
        .map_err(|e| format!("cannot list {}: {e}", registry_src.display()))?;
    for registry in registries.flatten() {
        let candidate = registry.path().join(&wanted).join("proto");
        if candidate.join("data-plane-api").join(ENTRY).is_file() {
            println!("cargo:rerun-if-changed={}", candidate.display());
            return Ok(candidate);
        }
    }
    Err(format!(
        "{wanted}/proto not found under {}; set SCOPEGATE_ENVOY_PROTO_DIR to that crate's proto/ directory",
        registry_src.display()
    ))
}

/// The `version` of package `name` in a Cargo.lock (first match).
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let needle = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == needle {
            let version = lines.next()?.trim();
            let value = version.strip_prefix("version = \"")?.strip_suffix('"')?;
            return Some(value.to_string());
        }
    }
    None
}
