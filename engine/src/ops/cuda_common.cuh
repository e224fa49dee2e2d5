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

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// The sum of a pair over the block, valid in thread 0 only. Once per kernel:
// a second call would overwrite `warps` while warp 0 may still read it.
__device__ __forceinline__ float2 block_sum_to_first(float2 v) {
    __shared__ float2 warps[32];
    v.x = warp_sum(v.x);
    v.y = warp_sum(v.y);
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    if (lane == 0) warps[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (blockDim.x >> 5) ? warps[lane] : make_float2(0.f, 0.f);
        v.x = warp_sum(v.x);
        v.y = warp_sum(v.y);
    }
    return v;
}

// The largest value over the block, in every thread.
__device__ __forceinline__ float block_max(float v) {
    __shared__ float warps[32];
    __shared__ float result;
    v = warp_max(v);
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    if (lane == 0) warps[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = warp_max(lane < (blockDim.x >> 5) ? warps[lane] : -INFINITY);
        if (lane == 0) result = v;
    }
    __syncthreads();
    return result;
}

// The sum over the block, in every thread.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float warps[32];
    __shared__ float result;
    v = warp_sum(v);
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    if (lane == 0) warps[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = warp_sum(lane < (blockDim.x >> 5) ? warps[lane] : 0.f);
        if (lane == 0) result = v;
    }
    __syncthreads();
    return result;
}
