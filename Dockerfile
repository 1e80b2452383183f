# syntax=docker/dockerfile:1
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

# The whole build context (git's files minus .dockerignore), so the build cannot drift from
# Cargo.toml: every target it declares (tests, benches) is there, and build.rs finds proto/.
# Dependencies are not rebuilt on every source change all the same: BuildKit cache mounts keep
# Cargo's registry and the target directory between builds. They are not part of any layer, so
# the binary is copied out of target/ in the same step.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin scopegate \
    && mkdir -p /out/data \
    && cp target/release/scopegate /out/scopegate

# ---------------------------------------------------------------------------------------------
# Runtime stage: distroless "cc" = glibc, libgcc, CA certificates and tzdata; no shell, no
# package manager. The :nonroot variant's user is nonroot, uid and gid 65532.
# ---------------------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=builder /out/scopegate /usr/local/bin/scopegate

# An empty /data owned by the image's user. When a named volume is first mounted on a path,
# Docker copies that path's ownership from the image, so the dev issuer (which runs as that
# user) can write its key file to a volume at /data. `serve` does not use it.
COPY --from=builder --chown=65532:65532 /out/data /data

# Numeric, so that Kubernetes' runAsNonRoot can verify the user without reading /etc/passwd.
USER 65532:65532

# gRPC: envoy.service.auth.v3.Authorization, grpc.health.v1.Health and server reflection.
EXPOSE 9191

ENTRYPOINT ["/usr/local/bin/scopegate"]
# Mount your configuration at this path, or pass other arguments to run another subcommand.
CMD ["serve", "--config", "/etc/scopegate/scopegate.toml"]
