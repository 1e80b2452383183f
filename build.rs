//! Compiles the protobuf descriptors that gRPC server reflection serves.
//!
//! The sources are the vendored `proto/` tree (one include root, refreshed by
//! `scripts/update-protos` from the `envoy-types` crate in `Cargo.lock`; `tests/protos.rs` checks
//! that it still matches). Nothing is looked up in Cargo's registry, `CARGO_HOME` or the
//! environment, so vendored, offline, git and patched builds all work the same. `protox` is a
//! pure-Rust protobuf compiler with the well-known `google/protobuf` types built in, so no
//! `protoc` is needed.

use std::env;
use std::path::PathBuf;

const ENTRY: &str = "envoy/service/auth/v3/external_auth.proto";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=proto");

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir.join("proto");
    let mut compiler = protox::Compiler::new([&root])
        .unwrap_or_else(|e| panic!("cannot read protos under {}: {e}", root.display()));
    compiler.include_imports(true).include_source_info(false);
    compiler
        .open_file(ENTRY)
        .unwrap_or_else(|e| panic!("cannot compile {ENTRY} from {}: {e}", root.display()));
    let bytes = compiler.encode_file_descriptor_set();

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("ext_authz_descriptor.bin"), bytes).expect("write descriptor set");
}
