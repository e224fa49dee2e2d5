// Device helpers shared by the engine's CUDA kernels: dtype conversions and
// reductions across a warp and a block (blockDim.x a multiple of 32, at most
// 1024).
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
    return __float2bfloat16(x);
}

struct Max {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct Sum {
    __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};

// `op` over a warp, in every lane.
template <typename Op> __device__ __forceinline__ float warp_all(float v, Op op) {
    for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// `op` over the block, in every thread; `identity` leaves a value unchanged.
// Safe to call again in the same kernel: every thread passes the second
// barrier only after warp 0 has read `warps`, and reads `result` before the
// next call's first barrier.
template <typename Op> __device__ __forceinline__ float block_all(float v, Op op, float identity) {
    __shared__ float warps[32];
    __shared__ float result;
    v = warp_all(v, op);
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    if (lane == 0) warps[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = warp_all(lane < (blockDim.x >> 5) ? warps[lane] : identity, op);
        if (lane == 0) result = v;
    }
    __syncthreads();
    return result;
}

__device__ __forceinline__ float block_max(float v) { return block_all(v, Max(), -INFINITY); }
__device__ __forceinline__ float block_sum(float v) { return block_all(v, Sum(), 0.f); }

// The sum of a pair over the block, valid in thread 0 only. Once per kernel:
// a second call would overwrite `warps` while warp 0 may still read it.
__device__ __forceinline__ float2 block_sum_to_first(float2 v) {
    __shared__ float2 warps[32];
    v.x = warp_all(v.x, Sum());
    v.y = warp_all(v.y, Sum());
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    if (lane == 0) warps[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (blockDim.x >> 5) ? warps[lane] : make_float2(0.f, 0.f);
        v.x = warp_all(v.x, Sum());
        v.y = warp_all(v.y, Sum());
    }
    return v;
}
