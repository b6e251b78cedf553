# syntax=docker/dockerfile:1
#
# The msk-sidecar image.
#
#   docker build -t msk-sidecar:dev .
#   docker build -t msk-sidecar:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg SOURCE_URL=https://github.com/<org>/msk-sidecar .
#
# Build stage: the toolchain that rust-toolchain.toml pins (RUST_VERSION must equal its channel;
# infra/check.sh checks it) and `cargo build --release --locked`: Cargo.lock as committed and
# the release profile of Cargo.toml, nothing image-specific. rdkafka-sys compiles librdkafka from
# source (make, perl, pkg-config, a C compiler) and links OpenSSL and zlib dynamically
# (libssl-dev, zlib1g-dev).
#
# Runtime stage: distroless cc-debian12 (glibc, libgcc, libssl3, ca-certificates, tzdata, no
# shell, no package manager), as its nonroot user 65532. cc-debian12 has no zlib (Debian 13's
# has), so libz.so.1 comes from the build stage: both are Debian 12, same ABI. The last RUN starts
# the binary once in the runtime image, so a missing shared library fails the build and not the
# first deployment.
#
# No AWS variables are baked in: credentials come from the task role, IRSA or Pod Identity, and
# all configuration from the environment at run time.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build

RUN apt-get update \
    && apt-get install -y --no-install-recommends make perl pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, against placeholder sources: this layer is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

COPY src ./src
# COPY keeps the files' own modification times, which may be older than the placeholder build:
# touch them so cargo rebuilds the crate itself.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && mkdir -p /out \
    && install -m 0755 target/release/msk-sidecar /out/msk-sidecar \
    && cp -L "/lib/$(gcc -print-multiarch)/libz.so.1" /out/libz.so.1

FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE_URL=""

LABEL org.opencontainers.image.title="msk-sidecar" \
      org.opencontainers.image.description="Consumes Kafka topics on Amazon MSK with IAM auth and hands every record to the application next to it." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

# /usr/lib is on glibc's default search path in Debian 12, whatever the architecture.
COPY --from=build /out/libz.so.1 /usr/lib/libz.so.1
COPY --from=build /out/msk-sidecar /usr/local/bin/msk-sidecar

USER 65532:65532

# Fails the build if the dynamic loader cannot resolve every library in this image.
RUN ["/usr/local/bin/msk-sidecar", "--version"]

# Admin server: /live, /ready, /metrics (SIDECAR_ADMIN_ADDR, loopback unless set to 0.0.0.0).
EXPOSE 9464

# Liveness, not readiness: /ready is 503 while the application is unreachable, and orchestrators
# that start the application after a healthy sidecar (ECS dependsOn HEALTHY) would deadlock.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/msk-sidecar", "healthcheck", "--live"]

# SIGTERM starts the drain: stop consuming, finish in-flight records, commit, leave the group.
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/msk-sidecar"]
CMD ["run"]
