#!/usr/bin/env bash
# Finishing-model benchmark on the CPU, with the real weights: our candle
# GAN upscaler against the PyTorch reference implementation (×4 of a 256²
# image, whole and per tile), and our open_nsfw against onnxruntime (per
# image), in the same run. Prints a table and the ratio candle/peer.
#   REPEATS=3 ./scripts/bench-finish.sh
# Python comes from .venv/bench (made from scripts/bench/requirements-engine.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS="${REPEATS:-3}"
VENV="${BENCH_VENV:-.venv/bench}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r scripts/bench/requirements-engine.txt
fi
python3 scripts/fetch-realesrgan.py target/weights >/dev/null
python3 scripts/fetch-opennsfw.py target/weights >/dev/null

results="$(mktemp)"
trap 'rm -f "$results"' EXIT
cargo build --release -q -p wordup-engine-testkit --bin finish-bench
echo "nproc: $(nproc)" >&2
./target/release/finish-bench --repeats "$REPEATS" | tee -a "$results"
"$VENV/bin/python" scripts/bench/finish_peers.py --repeats "$REPEATS" | tee -a "$results"

python3 - "$results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) < 4 or parts[0] != "RESULT":
        continue
    fields = dict(p.split("=", 1) for p in parts[3:])
    side = "candle" if parts[1] == "candle" else "peer"
    rows.setdefault((parts[2], fields["size"]), {})[side] = (parts[1], float(fields["ms"]))
print("| what | size | candle ms | peer | peer ms | candle/peer |")
print("|---|---:|---:|---|---:|---:|")
for (what, size), sides in rows.items():
    c = sides.get("candle", ("candle", 0))[1]
    peer, p = sides.get("peer", ("-", 0))
    ratio = f"{c / p:.2f}x" if c and p else "n/a"
    print(f"| {what} | {size}² | {c:.0f} | {peer} | {p:.0f} | {ratio} |")
PY
