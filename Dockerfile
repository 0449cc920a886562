# brisk container image: a release build in a full Rust image, copied into a
# slim Debian runtime that runs as an unprivileged user.
#
#   docker build -t brisk .
#   docker run -p 8080:8080 -v "$PWD/models:/models:ro" brisk
#
# Models are not baked in: mount them at /models (scripts/fetch-models
# fetches the test models), or point BRISK_CONFIG at a config whose sources
# live elsewhere. Checked by scripts/check-deploy (hadolint).

# --- build ------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
# The llama.cpp engine (crates/brisk-llama) compiles llama.cpp with cmake
# and generates its bindings with bindgen (libclang), as scripts/install-deps
# installs them for CI.
# The Whisper engine (crates/brisk-ct2) links the ctranslate2 wheel's
# library, which scripts/ct2-prebuilt fetches with pip (python3-pip) into
# BRISK_CT2_DIR; build.rs bakes that folder into the binary's rpath, so the
# runtime stage copies it to the same path.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev python3-pip \
 && rm -rf /var/lib/apt/lists/*
ENV BRISK_CT2_DIR=/opt/brisk/ct2 \
    CMAKE_LIBRARY_PATH=/opt/brisk/ct2
WORKDIR /src
COPY scripts/ct2-prebuilt scripts/ct2-prebuilt
RUN scripts/ct2-prebuilt
# Manifests first, so a source-only change reuses the dependency layer
# (cargo fetch needs every member's manifest and stubs of its declared
# targets). The C compiler of the Rust image builds the bundled C sources
# some dependencies carry.
COPY Cargo.toml Cargo.lock ./
# ggml's CPU features (AVX2/FMA/F16C, never target-cpu=native): the image
# must run on any x86-64 with AVX2.
COPY .cargo .cargo
COPY crates/brisk-core/Cargo.toml crates/brisk-core/Cargo.toml
COPY crates/brisk-engine/Cargo.toml crates/brisk-engine/Cargo.toml
COPY crates/brisk-backends/Cargo.toml crates/brisk-backends/Cargo.toml
COPY crates/brisk-llama/Cargo.toml crates/brisk-llama/Cargo.toml
COPY crates/brisk-ct2/Cargo.toml crates/brisk-ct2/Cargo.toml
COPY crates/brisk-server/Cargo.toml crates/brisk-server/Cargo.toml
RUN for c in brisk-core brisk-engine brisk-backends brisk-llama brisk-ct2 brisk-server; do \
      mkdir -p "crates/$c/src" && touch "crates/$c/src/lib.rs"; \
    done \
 && mkdir -p crates/brisk-backends/examples crates/brisk-server/src/cli \
 && for t in crates/brisk-server/src/cli/main.rs crates/brisk-backends/examples/whisper_bench.rs; do echo 'fn main() {}' > "$t"; done \
 && cargo fetch --locked
COPY crates crates
RUN cargo build --release --locked -p brisk-server --bin brisk \
 && strip target/release/brisk

# --- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
# curl only serves the HEALTHCHECK; libgomp1 is the OpenMP runtime of
# llama.cpp's thread pool. Versions are left to the bookworm
# security archive rather than pinned, so rebuilds pick up fixes.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/brisk --create-home brisk \
 && mkdir -p /models
COPY --from=build /src/target/release/brisk /usr/local/bin/brisk
COPY --from=build /opt/brisk/ct2 /opt/brisk/ct2

ENV BRISK_HOST=0.0.0.0 \
    BRISK_PORT=8080 \
    BRISK_MODELS_DIR=/models \
    BRISK_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/brisk
EXPOSE 8080
# Live answers within milliseconds of exec whatever the models do (readiness
# is /v2/health/ready); start_period only covers process start on a slow
# node, model loads never make the container unhealthy.
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s --retries=3 \
  CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null http://127.0.0.1:8080/v2/health/live || exit 1"]
ENTRYPOINT ["/usr/local/bin/brisk"]
CMD ["serve"]
