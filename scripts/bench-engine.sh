#!/usr/bin/env bash
# Per-stage engine benchmark: our candle engine and diffusers (PyTorch) on an
# SD-Turbo-sized model with random weights, in the same run, on this machine:
# text encoder, UNet step, VAE and TAESD decodes, and the whole one-step txt2img.
# Prints a table of median times and the ratio candle/torch (>1: candle slower).
#   SIZES=256,512 REPEATS=3 ./scripts/bench-engine.sh
# Python comes from .venv/bench (created here from
# scripts/bench/requirements-engine.txt when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES="${SIZES:-256,512}"
REPEATS="${REPEATS:-3}"
VENV="${BENCH_VENV:-.venv/bench}"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r scripts/bench/requirements-engine.txt
fi

results="$(mktemp)"
trap 'rm -f "$results"' EXIT
cargo build --release -q -p wordup-engine-testkit --bin sd-bench
echo "nproc: $(nproc)" >&2
"${CARGO_TARGET_DIR:-target}/release/sd-bench" stages --sizes "$SIZES" --repeats "$REPEATS" | tee -a "$results"
"$VENV/bin/python" scripts/bench/diffusers_stages.py --sizes "$SIZES" --repeats "$REPEATS" | tee -a "$results"

python3 scripts/bench/tables.py stages "$results"
