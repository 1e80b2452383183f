# syntax=docker/dockerfile:1
# scopegate container images, for linux/amd64 and linux/arm64.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t scopegate .
#   docker buildx build --platform linux/amd64,linux/arm64 --target dev -t scopegate:dev .
#   docker run --rm -p 9191:9191 -v "$PWD/scopegate.toml:/etc/scopegate/scopegate.toml:ro" scopegate
#
# Two images. The default, `runtime` (the last stage), is the production image: built with
# `--no-default-features`, it serves `serve` (the default command), `check-config`, `explain`,
# `openapi-rules` and `health` (for container health checks), and nothing of the development
# tools. `dev` adds them (`dev-issuer`, `mint-token`, `demo-upstream`, `dev-certs`):
# docker-compose.yml runs its dev issuers and demo upstream from it. Neither is emulated: the
# builder runs on the build machine's platform and cross-compiles for each target platform.

# ---------------------------------------------------------------------------------------------
# Build stage: Rust on Debian 12 (bookworm), the same Debian release as the runtime image, so
# the binary needs no newer glibc than the runtime has. It runs on $BUILDPLATFORM, whatever
# platform the image is for, and compiles for $TARGETARCH.
# ---------------------------------------------------------------------------------------------
FROM --platform=$BUILDPLATFORM rust:1.95-slim-bookworm AS builder

# Set by BuildKit: the platform the image is built for (TARGETPLATFORM, e.g. linux/arm64, and
# its architecture, TARGETARCH) and the one this stage runs on (BUILDARCH).
ARG TARGETPLATFORM
ARG TARGETARCH
ARG BUILDARCH

# A C toolchain for the crates that compile C: aws-lc-sys (the crypto library behind aws-lc-rs)
# and ring. Both build with the `cc` crate on x86_64 and aarch64 Linux, so neither CMake nor
# Perl, Go or NASM is needed. No OpenSSL: TLS is rustls. The other architecture's GCC (Debian's
# cross compilers, with their C library) links for it; the Rust standard library for the target
# comes from rustup, and /rust-target names the target for the build steps below.
RUN set -eu; \
    case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-gnu > /rust-target ;; \
      arm64) echo aarch64-unknown-linux-gnu > /rust-target ;; \
      *) echo "unsupported platform $TARGETPLATFORM" >&2; exit 1 ;; \
    esac; \
    case "$BUILDARCH" in \
      amd64) cross="gcc-aarch64-linux-gnu g++-aarch64-linux-gnu" ;; \
      arm64) cross="gcc-x86-64-linux-gnu g++-x86-64-linux-gnu" ;; \
      *) echo "unsupported build platform $BUILDARCH" >&2; exit 1 ;; \
    esac; \
    apt-get update; \
    apt-get install -y --no-install-recommends gcc g++ make pkg-config $cross; \
    rm -rf /var/lib/apt/lists/*; \
    rustup target add "$(cat /rust-target)"

# Which compiler, archiver and linker each target's C code and final link use: the
# triplet-named GCC, native or cross (the `cc` crate reads CC_/CXX_/AR_<target>, Cargo reads
# CARGO_TARGET_<TARGET>_LINKER).
ENV CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc \
    CXX_x86_64_unknown_linux_gnu=x86_64-linux-gnu-g++ \
    AR_x86_64_unknown_linux_gnu=x86_64-linux-gnu-ar \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++ \
    AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc

WORKDIR /src

# The whole build context (git's files minus .dockerignore), so the build cannot drift from
# Cargo.toml: every target it declares (tests, benches) is there, and build.rs finds proto/.
# Dependencies are not rebuilt on every source change all the same: BuildKit cache mounts keep
# Cargo's registry and the target directory between builds (each target triple has its own
# folder in it). They are not part of any layer, so the binary is copied out of target/ in the
# same step.
COPY . .

# The production binary: no development tools (`--no-default-features`).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --target "$(cat /rust-target)" --bin scopegate \
    && mkdir -p /out/doc \
    && cp "target/$(cat /rust-target)/release/scopegate" /out/scopegate \
    && cp LICENSE NOTICE /out/doc

# ---------------------------------------------------------------------------------------------
# The development binary, with the default features (the dev subcommands), for the dev image.
# Only `--target dev` builds it.
# ---------------------------------------------------------------------------------------------
FROM builder AS dev-builder

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "$(cat /rust-target)" --bin scopegate \
    && mkdir -p /out/dev /out/data \
    && cp "target/$(cat /rust-target)/release/scopegate" /out/dev/scopegate

# ---------------------------------------------------------------------------------------------
# The dev image: the production image's base with the development tools (docker-compose.yml's
# dev issuers and demo upstream). Not for production.
# ---------------------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS dev

COPY --from=dev-builder /out/dev/scopegate /usr/local/bin/scopegate
COPY --from=builder /out/doc /usr/share/doc/scopegate

# An empty /data owned by the image's user. When a named volume is first mounted on a path,
# Docker copies that path's ownership from the image, so the dev issuer (which runs as that
# user) can write its key file to a volume at /data.
COPY --from=dev-builder --chown=65532:65532 /out/data /data

# Numeric, so that Kubernetes' runAsNonRoot can verify the user without reading /etc/passwd.
USER 65532:65532

EXPOSE 9191

ENTRYPOINT ["/usr/local/bin/scopegate"]
CMD ["serve", "--config", "/etc/scopegate/scopegate.toml"]

# ---------------------------------------------------------------------------------------------
# Runtime stage, the default image (last, so a build without --target makes it): distroless
# "cc" = glibc, libgcc, CA certificates and tzdata; no shell, no package manager. The :nonroot
# variant's user is nonroot, uid and gid 65532. The base image is multi-platform: each target
# platform gets its own.
# ---------------------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

COPY --from=builder /out/scopegate /usr/local/bin/scopegate
COPY --from=builder /out/doc /usr/share/doc/scopegate

# Numeric, so that Kubernetes' runAsNonRoot can verify the user without reading /etc/passwd.
USER 65532:65532

# gRPC: envoy.service.auth.v3.Authorization, grpc.health.v1.Health and server reflection.
EXPOSE 9191

ENTRYPOINT ["/usr/local/bin/scopegate"]
# Mount your configuration at this path, or pass other arguments to run another subcommand.
CMD ["serve", "--config", "/etc/scopegate/scopegate.toml"]
