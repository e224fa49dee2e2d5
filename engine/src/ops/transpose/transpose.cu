// A batch of matrix transposes, [batch, rows, cols] -> [batch, cols, rows]:
// NCHW <-> NHWC is one per image ([c, h*w] <-> [h*w, c]). Each block moves a
// 32x32 tile through shared memory, so that both its reads and its writes
// are runs of consecutive addresses; the extra column keeps the tile's
// column reads off a single shared-memory bank.
#include "cuda_common.cuh"

constexpr uint32_t TRANSPOSE_TILE = 32;
// A block is 256 threads: eight warps, each a row of the tile at a time.
constexpr uint32_t TRANSPOSE_ROWS_PER_PASS = 8;

template <typename T>
__device__ void transpose_tile(const T* x, T* y, uint32_t rows, uint32_t cols) {
    __shared__ T tile[TRANSPOSE_TILE][TRANSPOSE_TILE + 1];
    const uint64_t plane = (uint64_t)rows * cols;
    const T* in = x + blockIdx.z * plane;
    T* out = y + blockIdx.z * plane;
    const uint32_t col0 = blockIdx.x * TRANSPOSE_TILE, row0 = blockIdx.y * TRANSPOSE_TILE;
    const uint32_t lane = threadIdx.x % TRANSPOSE_TILE, warp = threadIdx.x / TRANSPOSE_TILE;
    for (uint32_t r = warp; r < TRANSPOSE_TILE; r += TRANSPOSE_ROWS_PER_PASS) {
        const uint32_t row = row0 + r, col = col0 + lane;
        if (row < rows && col < cols) tile[r][lane] = in[(uint64_t)row * cols + col];
    }
    __syncthreads();
    // Lane x now walks the tile's column x, which is a row of the output.
    for (uint32_t c = warp; c < TRANSPOSE_TILE; c += TRANSPOSE_ROWS_PER_PASS) {
        const uint32_t col = col0 + c, row = row0 + lane;
        if (col < cols && row < rows) out[(uint64_t)col * rows + row] = tile[lane][c];
    }
}

#define TRANSPOSE_KERNEL(T, SUFFIX)                                                                  \
    extern "C" __global__ void transpose_batched_##SUFFIX(const T* x, T* y, uint32_t rows, uint32_t cols) { \
        transpose_tile<T>(x, y, rows, cols);                                                          \
    }

TRANSPOSE_KERNEL(float, f32)
TRANSPOSE_KERNEL(__half, f16)
TRANSPOSE_KERNEL(__nv_bfloat16, bf16)
