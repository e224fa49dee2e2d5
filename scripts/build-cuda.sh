#!/usr/bin/env bash
# Builds wordup-engine with candle's `cuda,cudnn` features on a machine with
# no GPU and no CUDA install: the CUDA 13.0 toolchain comes from NVIDIA's
# PyPI wheels, libcuda (which only the driver ships) is replaced at link
# time by a stub with its soname, and the compute capability is given
# rather than queried. Output: a stripped binary at target/cuda/wordup-engine
# that runs on hosts with an NVIDIA driver for CUDA 13 (580+) and the
# CUDA 13 runtime libraries (the engine image's base has them).
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

# 3. A libcuda stub: the driver API is resolved at run time, but something
#    must carry the soname at link time.
STUB="$ROOT/stub"
mkdir -p "$STUB"
if [ ! -e "$STUB/libcuda.so" ]; then
    echo 'void wordup_libcuda_stub(void) {}' > "$STUB/stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$STUB/libcuda.so.1" "$STUB/stub.c"
    ln -sf libcuda.so.1 "$STUB/libcuda.so"
fi

export CUDA_ROOT="$CUDA" CUDA_PATH="$CUDA" CUDA_HOME="$CUDA" CUDA_TOOLKIT_ROOT_DIR="$CUDA"
export CUDARC_CUDA_VERSION=13000
export PATH="$CUDA/bin:$PATH"
export LIBRARY_PATH="$CUDA/lib:$CUDNN/lib:$STUB:${LIBRARY_PATH:-}"
export LD_LIBRARY_PATH="$CUDA/lib:$CUDNN/lib:$STUB:${LD_LIBRARY_PATH:-}"
export CPATH="$CUDA/include:$CUDNN/include:${CPATH:-}"
export NVCC_PREPEND_FLAGS="${NVCC_PREPEND_FLAGS:-} -I$CUDA/include -I$CUDNN/include"

# 4. Build, then strip: debug info is most of the binary's size.
echo "== building wordup-engine with cuda,cudnn for sm_$CUDA_COMPUTE_CAP" >&2
cargo build --release -p wordup-engine --bin wordup-engine --features cuda,cudnn \
    --target-dir "$ROOT/build"
cp "$ROOT/build/release/wordup-engine" "$ROOT/wordup-engine"
strip "$ROOT/wordup-engine"
ls -l "$ROOT/wordup-engine" >&2
echo "$ROOT/wordup-engine"
