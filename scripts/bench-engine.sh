#!/usr/bin/env bash
# Per-stage engine benchmark: our candle engine and diffusers (PyTorch) on an
# SD-Turbo-sized model with random weights, in the same run, on this machine.
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
cargo build --release -q -p wordup-engine --bin sd-stage-bench
echo "nproc: $(nproc)" >&2
./target/release/sd-stage-bench --sizes "$SIZES" --repeats "$REPEATS" | tee -a "$results"
"$VENV/bin/python" scripts/bench/diffusers_stages.py --sizes "$SIZES" --repeats "$REPEATS" | tee -a "$results"

python3 - "$results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) < 4 or parts[0] != "RESULT":
        continue
    fields = dict(p.split("=", 1) for p in parts[3:])
    key = (parts[2], int(fields["size"]), int(fields.get("batch", 1)))
    rows.setdefault(key, {})[parts[1]] = float(fields["ms"])
print("| stage | size | batch | candle ms | PyTorch ms | candle/PyTorch |")
print("|---|---:|---:|---:|---:|---:|")
order = {"text_encoder": 0, "unet_step": 1, "vae_decode": 2}
for (stage, size, batch), times in sorted(rows.items(), key=lambda kv: (kv[0][1], order.get(kv[0][0], 9))):
    c, t = times.get("candle"), times.get("torch")
    ratio = f"{c / t:.2f}x" if c and t else "n/a"
    print(f"| {stage} | {size if size else '-'} | {batch} | {c or 0:.0f} | {t or 0:.0f} | {ratio} |")
PY
