// Softmax over rows of `width` values, one block per row: the row's maximum,
// the sum of exp(x − max), then exp(x − max) / sum written in the input's
// dtype, all in f32. candle's path for f16 scores is three kernels (to f32,
// its f32 softmax, back to f16), each a pass over the whole score matrix.
#include "cuda_common.cuh"

template <typename T>
__device__ void softmax_row(const T* x, T* y, uint32_t width) {
    const T* in = x + (uint64_t)blockIdx.x * width;
    T* out = y + (uint64_t)blockIdx.x * width;
    float largest = -INFINITY;
    for (uint32_t i = threadIdx.x; i < width; i += blockDim.x) largest = fmaxf(largest, to_float(in[i]));
    largest = block_max(largest);
    float sum = 0.f;
    for (uint32_t i = threadIdx.x; i < width; i += blockDim.x) sum += __expf(to_float(in[i]) - largest);
    const float scale = 1.f / block_sum(sum);
    for (uint32_t i = threadIdx.x; i < width; i += blockDim.x)
        out[i] = from_float<T>(__expf(to_float(in[i]) - largest) * scale);
}

#define SOFTMAX_KERNEL(T, SUFFIX)                                                     \
    extern "C" __global__ void softmax_rows_##SUFFIX(const T* x, T* y, uint32_t width) { \
        softmax_row<T>(x, y, width);                                                  \
    }

SOFTMAX_KERNEL(float, f32)
SOFTMAX_KERNEL(__half, f16)
SOFTMAX_KERNEL(__nv_bfloat16, bf16)
