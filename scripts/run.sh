#!/usr/bin/env bash
# The quick start's first command: sets up what Word Up! needs locally
# (PostgreSQL), builds the binaries, applies migrations and prints the
# stack's health. Extra arguments go to `wordup-bot` instead of `status`.
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE_URL="${DATABASE_URL:-$(./scripts/postgres.sh | tail -n1)}"
export DATABASE_URL

cargo build --quiet --release --bin wordup-bot --bin wordup-engine
if [ "$#" -eq 0 ]; then set -- status; fi
exec ./target/release/wordup-bot "$@"
