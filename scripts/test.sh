#!/usr/bin/env bash
# The quick start's second command, and what CI runs: brings up PostgreSQL,
# then checks formatting and lints and runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE_URL="${DATABASE_URL:-$(./scripts/postgres.sh | tail -n1)}"
export DATABASE_URL

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
