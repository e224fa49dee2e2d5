#!/usr/bin/env bash
# Builds wordup-engine with candle's `cuda,cudnn` features on a machine with
# no GPU and no CUDA install: the CUDA 13.0 toolchain comes from NVIDIA's
# PyPI wheels, libcuda (which only the driver ships) is replaced at link
# time by a stub with its soname, and the compute capability is given
# rather than queried. Output: a stripped binary at target/cuda/wordup-engine
# and its gzip (target/cuda/wordup-engine.gz, ~20 MB, to carry to a GPU
# host), which run on hosts with an NVIDIA driver for CUDA 13 (580+) and
# the CUDA 13 runtime libraries (cudart, cuBLAS, cuRAND, cuDNN 9; the
# engine image's base has them). Without a usable GPU it runs on the CPU.
#
#   ./scripts/build-cuda.sh            # sm_90 (H100/H200)
#   CUDA_COMPUTE_CAP=89 ./scripts/build-cuda.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT="$PWD/target/cuda"
TOOLKIT="$ROOT/toolkit"
CUDA_VERSION_PIN="${CUDA_VERSION_PIN:-13.0}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
mkdir -p "$ROOT"

# 1. The toolchain, from PyPI (pip installs them under nvidia/cu13/).
if [ ! -x "$TOOLKIT/nvidia/cu13/bin/nvcc" ]; then
    echo "== fetching the CUDA $CUDA_VERSION_PIN toolchain wheels" >&2
    python3 -m pip install --quiet --no-deps --target "$TOOLKIT" \
        "nvidia-cuda-nvcc==$CUDA_VERSION_PIN.*" "nvidia-nvvm==$CUDA_VERSION_PIN.*" \
        "nvidia-cuda-crt==$CUDA_VERSION_PIN.*" "nvidia-cuda-runtime==$CUDA_VERSION_PIN.*" \
        "nvidia-cuda-cccl==$CUDA_VERSION_PIN.*" "nvidia-cublas==$CUDA_VERSION_PIN.*" \
        "nvidia-cuda-nvrtc==$CUDA_VERSION_PIN.*" "nvidia-curand" "nvidia-cudnn-cu13==9.*"
fi
CUDA="$TOOLKIT/nvidia/cu13"
CUDNN="$TOOLKIT/nvidia/cudnn"
test -x "$CUDA/bin/nvcc" || { echo "nvcc missing under $CUDA" >&2; exit 1; }

# 2. The wheels ship versioned sonames only; the linker wants libX.so.
for lib in "$CUDA"/lib/lib*.so.* "$CUDNN"/lib/lib*.so.*; do
    base="${lib%%.so.*}.so"
    [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
done

# 3. A libcuda stub: only the driver ships libcuda.so.1, and candle links
#    cudarc's driver API dynamically, so the linker needs every symbol it
#    references. The stub defines them all (taken from cudarc's bindings)
#    under the real soname; at run time the driver's library is loaded
#    instead and the stub is never used.
STUB="$ROOT/stub"
mkdir -p "$STUB"
if [ ! -e "$STUB/libcuda.so" ]; then
    cudarc_src="$(cargo metadata --format-version 1 --features wordup-engine/cuda 2>/dev/null | python3 -c '
import json, sys
meta = json.load(sys.stdin)
print(next(p["manifest_path"] for p in meta["packages"] if p["name"] == "cudarc").rsplit("/", 1)[0])')"
    grep -ohE "fn cu[A-Za-z0-9_]+\(" "$cudarc_src/src/driver/sys/mod.rs" | sed 's/^fn //; s/($//' | sort -u \
        | awk '{ print "int " $1 "(void) { return 999; /* CUDA_ERROR_UNKNOWN */ }" }' > "$STUB/stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$STUB/libcuda.so.1" "$STUB/stub.c"
    ln -sf libcuda.so.1 "$STUB/libcuda.so"
    echo "libcuda stub: $(wc -l < "$STUB/stub.c") symbols" >&2
fi

export CUDA_ROOT="$CUDA" CUDA_PATH="$CUDA" CUDA_HOME="$CUDA" CUDA_TOOLKIT_ROOT_DIR="$CUDA"
export CUDARC_CUDA_VERSION=13000
export PATH="$CUDA/bin:$PATH"
export LIBRARY_PATH="$CUDA/lib:$CUDNN/lib:$STUB:${LIBRARY_PATH:-}"
export LD_LIBRARY_PATH="$CUDA/lib:$CUDNN/lib:$STUB:${LD_LIBRARY_PATH:-}"
export CPATH="$CUDA/include:$CUDNN/include:${CPATH:-}"
export NVCC_PREPEND_FLAGS="${NVCC_PREPEND_FLAGS:-} -I$CUDA/include -I$CUDNN/include"

# 4. Build, then strip (debug info is most of the binary's size) and gzip:
#    the kernels' PTX keeps it near 65 MB, and gzip brings it to about 20.
#    sd-bench is the GPU check's binary (scripts/gpu-check.sh). CUDA_FEATURES=cuda builds without cuDNN (convs
#    through im2col and cuBLAS), into CUDA_OUT, for comparing the two.
FEATURES="${CUDA_FEATURES:-cuda,cudnn}"
OUT_DIR="${CUDA_OUT:-$ROOT}"
mkdir -p "$OUT_DIR"
echo "== building wordup-engine and sd-bench with $FEATURES for sm_$CUDA_COMPUTE_CAP" >&2
# The features are the engine library's; both binaries' packages build on it.
ENGINE_FEATURES="$(echo "$FEATURES" | sed -E 's/([a-z]+)/wordup-engine\/\1/g')"
cargo build --release -p wordup-engine-bin -p wordup-engine-testkit --bin wordup-engine --bin sd-bench \
    --features "$ENGINE_FEATURES" --target-dir "$ROOT/build"
for bin in wordup-engine sd-bench; do
    cp "$ROOT/build/release/$bin" "$OUT_DIR/$bin"
    strip "$OUT_DIR/$bin"
    gzip -9 -k -f "$OUT_DIR/$bin"
    ls -l "$OUT_DIR/$bin" "$OUT_DIR/$bin.gz" >&2
done
echo "$OUT_DIR/wordup-engine.gz"
