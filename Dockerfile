# scopegate container image.
#
#   docker build -t scopegate .
#   docker run --rm -p 9191:9191 -v "$PWD/scopegate.toml:/etc/scopegate/scopegate.toml:ro" scopegate
#
# One image serves every subcommand: `serve` (the default), `check-config`, `health` (for
# container health checks), and the demo helpers `dev-issuer` and `demo-upstream`.

# ---------------------------------------------------------------------------------------------
# Build stage: Rust on Debian 12 (bookworm), the same Debian release as the runtime image, so
# the binary needs no newer glibc than the runtime has.
# ---------------------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS builder

# A C toolchain for the crates that compile C: aws-lc-sys (the crypto library behind aws-lc-rs)
# and ring. Both build with the `cc` crate on x86_64 and aarch64 Linux, so neither CMake nor
# Perl, Go or NASM is needed. No OpenSSL: TLS is rustls.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ make pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, in their own layer, so editing scopegate's own code does not rebuild
# them. Only the manifest, the lock file and the build script go in, with placeholder sources
# where Cargo expects targets (the bench is declared in Cargo.toml, so its file must exist).
# build.rs runs here too: it finds the envoy-types crate's .proto files in Cargo's registry
# cache ($CARGO_HOME/registry/src, CARGO_HOME=/usr/local/cargo in this image), which this
# build has just filled, so no protoc and no network access beyond crates.io is needed.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/decision.rs \
    && cargo build --release --locked --bin scopegate \
    && rm -rf src benches

# Then the real sources. COPY keeps the files' own timestamps, which can be older than the
# placeholder build above; touching the crate roots makes Cargo rebuild scopegate itself.
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin scopegate \
    && mkdir -p /out/data \
    && cp target/release/scopegate /out/scopegate

# ---------------------------------------------------------------------------------------------
# Runtime stage: distroless "cc" = glibc, libgcc, CA certificates and tzdata; no shell, no
# package manager. The :nonroot variant's default user is nonroot (uid/gid 65532).
# ---------------------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=builder /out/scopegate /usr/local/bin/scopegate

# An empty, nonroot-owned /data. When a named volume is first mounted on a path, Docker copies
# that path's ownership from the image, so the dev issuer (which runs as nonroot) can write its
# key file to a volume at /data. `serve` does not use it.
COPY --from=builder --chown=65532:65532 /out/data /data

USER nonroot

# gRPC: envoy.service.auth.v3.Authorization, grpc.health.v1.Health and server reflection.
EXPOSE 9191

ENTRYPOINT ["/usr/local/bin/scopegate"]
# Mount your configuration at this path, or pass other arguments to run another subcommand.
CMD ["serve", "--config", "/etc/scopegate/scopegate.toml"]
