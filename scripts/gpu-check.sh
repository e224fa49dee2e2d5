#!/usr/bin/env bash
# The GPU check, one prepared run on a GPU host (issue: "measured on a GPU"):
#   1. parity: single blocks (GroupNorm, softmax, convolution, ResNet block,
#      attention: our CUDA kernels and cuDNN calls) on the GPU in f32 and f16
#      against the CPU in f32 (sd-bench parts; its CANDIDATE lines give each
#      of our cuDNN convolutions' error, which the engine checks itself and
#      so are no failure of the check); then the tiny test models
#      (SD-1 and SD-2 style) drawn on the GPU in
#      f32 and f16 against the CPU in f32, within sd-bench's tolerances, with
#      each stage's own relative error (which stage a difference comes from);
#   2. speed: txt2img with an SD-Turbo-sized random-weight model at 512², batch
#      1 and 4, 1 and 4 steps, in f16, with diffusers (PyTorch) and then our
#      candle engine on the same saved weights; a table with images/s and the
#      ratio candle/PyTorch (should the candle run fail, it runs once more
#      without the newest GPU paths); then 1, 2 and 4 grids of different prompts drawn
#      one at a time and as one batch (sd-bench grids, WORDUP_ENGINE_BATCH);
#   3. the speed at batch 1 again without CUDA graphs (WORDUP_NO_CUDA_GRAPHS),
#      then single blocks timed (sd-bench parts): our GroupNorm against
#      candle's, each convolution candidate, NCHW against NHWC, attention
#      unfused against flash.
# It needs no Rust toolchain and no network: the CUDA sd-bench binary comes
# from ./scripts/build-cuda.sh (target/cuda/sd-bench.gz), the CUDA libraries
# from the host's Python packages (PyTorch's nvidia-* wheels), diffusers from
# wheels in .whl/ when the host's Python lacks it.
#
# Before, on the build machine (with Rust and a network):
#   ./scripts/gpu-check.sh prepare   # target/cuda/sd-bench.gz and .whl/diffusers-*.whl
# then carry target/cuda/sd-bench.gz and .whl to the GPU host and run
#   ./scripts/gpu-check.sh           # parity, then speed (the issue's check)
#   ./scripts/gpu-check.sh parity    # parity alone
#   ./scripts/gpu-check.sh speed     # speed alone
#   ./scripts/gpu-check.sh stages    # where the time goes: each stage alone,
#                                    # candle and PyTorch (sd-bench stages)
#   ./scripts/gpu-check.sh parts     # single blocks: GPU-vs-CPU error and
#                                    # time (sd-bench parts)
#
# Settings (environment): BIN_DIR (where sd-bench.gz is; target/cuda),
# SD_BENCH (an unpacked binary instead), PYTHON (python3), SIZE (512), BATCHES
# (1,4), STEPS (1,4), GRIDS (1,2,4), DTYPE (f16), REPEATS (5), CONFIGS (scripts/bench/sd-turbo),
# TOKENIZER (engine/tests/fixtures/clip-tokenizer), NO_TORCH (set: stages and
# speed time candle only; speed then needs MODEL_DIR from an earlier run),
# MODEL_DIR (where speed saves, or finds, the random-weight model), ALLOW_CPU (unset: fail when no GPU is usable; set it for
# a smoke run on a CPU host), OUT (where the log and the table go; default
# target/gpu-check), PEAK_TFLOPS (the card's dense f16 peak the tables'
# shares are of; 989, an H100/H200).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
    ./scripts/build-cuda.sh
    python3 -m pip download -q --no-deps --only-binary=:all: -d .whl "diffusers==0.42.1"
    ls -l target/cuda/sd-bench.gz .whl/*.whl
    exit 0
fi

MODE="${1:-check}"
case "$MODE" in
    check | parity | speed | stages | parts) ;;
    *) echo "unknown mode $MODE: prepare, check, parity, speed, stages or parts" >&2; exit 2 ;;
esac
BIN_DIR="${BIN_DIR:-target/cuda}"
PYTHON="${PYTHON:-python3}"
SIZE="${SIZE:-512}"
BATCHES="${BATCHES:-1,4}"
STEPS="${STEPS:-1,4}"
GRIDS="${GRIDS:-1,2,4}"
DTYPE="${DTYPE:-f16}"
REPEATS="${REPEATS:-5}"
CONFIGS="${CONFIGS:-scripts/bench/sd-turbo}"
TOKENIZER="${TOKENIZER:-engine/tests/fixtures/clip-tokenizer}"
OUT="${OUT:-target/gpu-check}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

# The whole check (its body is not indented: it holds Python heredocs).
main() {

if [ -z "${SD_BENCH:-}" ]; then
    SD_BENCH="$WORK/sd-bench"
    gzip -dc "$BIN_DIR/sd-bench.gz" > "$SD_BENCH"
    chmod +x "$SD_BENCH"
fi

# diffusers from carried wheels where the host's Python has none.
if ! "$PYTHON" -c 'import diffusers' 2>/dev/null && compgen -G '.whl/*.whl' >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$WORK/site" .whl/*.whl
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi

# The CUDA runtime, cuBLAS, cuRAND and cuDNN that PyTorch's wheels bring.
nvidia_libs="$("$PYTHON" - <<'PY' 2>/dev/null || true
import os, site
dirs = set()
for root in site.getsitepackages():
    base = os.path.join(root, "nvidia")
    for path, _, files in os.walk(base):
        if any(".so" in f for f in files):
            dirs.add(path)
print(":".join(sorted(dirs)))
PY
)"
export LD_LIBRARY_PATH="${nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "== host"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$PYTHON" -c 'import torch, diffusers; print("torch", torch.__version__, "diffusers", diffusers.__version__)'
# The driver's libcuda.so.1 lives where the host's image put it, which is
# not always on the loader's path: look for whatever ldd cannot find.
for lib in $(ldd "$SD_BENCH" | awk '/not found/ { print $1 }'); do
    found="$(find /usr/local/nvidia /usr/local/cuda /usr/lib /usr/lib64 /opt -name "$lib" -not -path '*stubs*' 2>/dev/null | head -1 || true)"
    if [ -n "$found" ]; then
        echo "$lib: found at $found"
        export LD_LIBRARY_PATH="$(dirname "$found"):$LD_LIBRARY_PATH"
    fi
done
missing="$(ldd "$SD_BENCH" | grep 'not found' || true)"
if [ -n "$missing" ]; then
    echo "sd-bench cannot load its libraries:"
    echo "$missing"
    return 1
fi
require_gpu=(--require-gpu)
if [ -n "${ALLOW_CPU:-}" ]; then
    require_gpu=()
elif ! "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    # Both sides would fall back to the CPU: minutes of nothing useful.
    echo "PyTorch sees no GPU; stopping"
    return 1
fi

if [ "$MODE" = stages ]; then
    echo "== stages: ${SIZE}², batches $BATCHES, $DTYPE"
    "$SD_BENCH" stages --gpu --configs "$CONFIGS" --tokenizer "$TOKENIZER" --sizes "$SIZE" \
        --batches "$BATCHES" --dtype "$DTYPE" --repeats "$REPEATS" | tee -a "$WORK/results"
    if [ -z "${NO_TORCH:-}" ]; then
        "$PYTHON" scripts/bench/diffusers_stages.py --gpu --configs "$CONFIGS" \
            --tokenizer "$TOKENIZER" --sizes "$SIZE" --batches "$BATCHES" --dtype "$DTYPE" \
            --repeats "$REPEATS" | tee -a "$WORK/results"
    fi
    "$PYTHON" scripts/bench/tables.py stages "$WORK/results" | tee "$OUT/stages.md"
    return 0
fi

if [ "$MODE" = parts ]; then
    "$SD_BENCH" parts --repeats "$REPEATS"
    return 0
fi

parity=0
if [ "$MODE" != speed ]; then
echo "== parity: single blocks (our CUDA kernels among them), GPU against CPU"
"$SD_BENCH" parts --no-timing | tee -a "$WORK/results" || parity=1
echo "== parity: GPU against CPU on the tiny models"
for model in engine/tests/fixtures/sd1-tiny engine/tests/fixtures/sd2-tiny; do
    "$SD_BENCH" parity --model "$model" "${require_gpu[@]}" | tee -a "$WORK/results" || parity=1
done
fi

if [ "$MODE" = parity ]; then
    [ "$parity" -eq 0 ] && echo "parity ok" || echo "parity FAILED (see the PARITY lines above)"
    return "$parity"
fi

echo "== speed: ${SIZE}², batches $BATCHES, steps $STEPS, $DTYPE"
# Each side may fail alone (the table then says n/a); the candle side needs
# only the model directory, which the PyTorch side writes before it times.
speed=0
model="${MODEL_DIR:-$WORK/model}"
if [ -z "${NO_TORCH:-}" ]; then
    "$PYTHON" scripts/bench/diffusers_e2e.py --configs "$CONFIGS" --tokenizer "$TOKENIZER" \
        --save "$model" --size "$SIZE" --batches "$BATCHES" --steps "$STEPS" \
        --dtype "$DTYPE" --repeats "$REPEATS" | tee -a "$WORK/results" || speed=1
fi
[ -f "$model/model_index.json" ] || { echo "no model directory at $model"; return 1; }
candle_speed() {
    "$SD_BENCH" speed --model "$model" --size "$SIZE" --batches "$BATCHES" --steps "$STEPS" \
        --dtype "$DTYPE" --repeats "$REPEATS" "${require_gpu[@]}" | tee "$WORK/candle-speed"
}
# A crash in the newest GPU paths (never run on a GPU before they landed)
# must not cost the table: the run is repeated once without them.
if candle_speed; then
    cat "$WORK/candle-speed" >> "$WORK/results"
else
    speed=1
    echo "== the candle speed run FAILED; once more without cuDNN graph-API convolutions"
    echo "== and CUDA graphs (WORDUP_NO_CUDNN_GRAPH, WORDUP_NO_CUDA_GRAPHS)"
    if WORDUP_NO_CUDNN_GRAPH=true WORDUP_NO_CUDA_GRAPHS=true candle_speed; then
        cat "$WORK/candle-speed" >> "$WORK/results"
        echo "(the table's candle column is from that second run; the rest runs without them too)"
        export WORDUP_NO_CUDNN_GRAPH=true WORDUP_NO_CUDA_GRAPHS=true
    fi
fi

"$PYTHON" scripts/bench/tables.py e2e "$WORK/results" | tee "$OUT/table.md"
echo "== grids of different prompts, one at a time and as one batch (WORDUP_ENGINE_BATCH)"
"$SD_BENCH" grids --model "$model" --size "$SIZE" --grids "$GRIDS" --steps 1 --dtype "$DTYPE" \
    --repeats "$REPEATS" | tee -a "$WORK/results" | tee "$OUT/grids.md" || speed=1
# Where the time goes, block by block (GroupNorm ours vs candle's, each
# convolution candidate, NCHW vs NHWC, attention unfused vs flash), and what
# CUDA graphs give at batch 1 (the speed above kept them where faster):
# seconds each, so in every full check.
if [ "$MODE" = check ]; then
    echo "== speed without CUDA graphs, batch 1 (WORDUP_NO_CUDA_GRAPHS)"
    WORDUP_NO_CUDA_GRAPHS=true "$SD_BENCH" speed --model "$model" --size "$SIZE" --batches 1 \
        --steps "$STEPS" --dtype "$DTYPE" --repeats "$REPEATS" "${require_gpu[@]}" \
        | tee "$OUT/no-cuda-graphs.txt" || speed=1
    echo "== parts: single blocks timed at ${SIZE}²"
    "$SD_BENCH" parts --side "$SIZE" --repeats "$REPEATS" | tee "$OUT/parts.txt" || speed=1
fi
if [ "$speed" -ne 0 ]; then
    echo "a speed run FAILED (see above)"
    return 1
fi
[ "$MODE" = speed ] && return 0
if [ "$parity" -ne 0 ]; then
    echo "parity FAILED (see the PARITY lines above)"
    return 1
fi
echo "parity ok"
}

# A pipe rather than `exec > >(tee)`, so that the log is complete on exit;
# with pipefail the script's status is main's.
main 2>&1 | tee "$OUT/gpu-check.log"
