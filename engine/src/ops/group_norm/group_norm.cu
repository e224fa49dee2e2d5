// GroupNorm, optionally followed by SiLU, over NCHW activations in three
// launches: partial sums of each group's contiguous span, then each group's
// mean and 1/std (in double), then one pass that normalises, applies the
// channel's weight and bias and the SiLU. candle's GroupNorm is about eight
// passes over the activations (and SiLU a ninth). Statistics are f32 sums
// of values shifted by the group's first element (so large means keep their
// precision) combined in double; inputs and outputs stay in their dtype.
#include "cuda_common.cuh"

// grid (splits, batch·groups): block (split, group) sums Σ(x − shift) and
// Σ(x − shift)² over its share of the group's span, into
// partials[group·splits + split].
template <typename T>
__device__ void partial_sums(const T* x, float2* partials, uint64_t span) {
    const uint64_t group = blockIdx.y;
    const uint32_t splits = gridDim.x, split = blockIdx.x;
    const T* values = x + group * span;
    const float shift = to_float(values[0]);
    const uint64_t share = (span + splits - 1) / splits;
    const uint64_t begin = split * share;
    const uint64_t end = begin + share < span ? begin + share : span;
    float2 sums = make_float2(0.f, 0.f);
    for (uint64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const float v = to_float(values[i]) - shift;
        sums.x += v;
        sums.y += v * v;
    }
    sums = block_sum_to_first(sums);
    if (threadIdx.x == 0) partials[group * splits + split] = sums;
}

// One thread per group: stats[group] = (mean, 1/sqrt(var + eps)).
template <typename T>
__device__ void group_stats(const T* x, const float2* partials, float2* stats, uint32_t groups,
                            uint32_t splits, uint64_t span, float eps) {
    const uint32_t group = blockIdx.x * blockDim.x + threadIdx.x;
    if (group >= groups) return;
    double s = 0.0, ss = 0.0;
    for (uint32_t k = 0; k < splits; ++k) {
        const float2 p = partials[group * splits + k];
        s += p.x;
        ss += p.y;
    }
    const double n = (double)span;
    const double shifted_mean = s / n;
    double var = ss / n - shifted_mean * shifted_mean;
    if (var < 0.0) var = 0.0;
    const double mean = (double)to_float(x[(uint64_t)group * span]) + shifted_mean;
    stats[group] = make_float2((float)mean, (float)(1.0 / sqrt(var + (double)eps)));
}

// grid (blocks over the plane, batch·channels): y = x·scale + shift for
// each element of plane (n, c), then SiLU when asked.
template <typename T>
__device__ void normalise(const T* x, T* y, const T* weight, const T* bias, const float2* stats,
                          uint32_t channels, uint32_t groups_per_image, uint64_t plane_size,
                          int silu) {
    const uint32_t plane = blockIdx.y;
    const uint32_t image = plane / channels, channel = plane % channels;
    const uint32_t group = image * groups_per_image + channel / (channels / groups_per_image);
    const float2 st = stats[group];
    const float scale = st.y * to_float(weight[channel]);
    const float shift = to_float(bias[channel]) - st.x * scale;
    const T* in = x + (uint64_t)plane * plane_size;
    T* out = y + (uint64_t)plane * plane_size;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < plane_size;
         i += (uint64_t)gridDim.x * blockDim.x) {
        float v = to_float(in[i]) * scale + shift;
        if (silu) v = v / (1.f + __expf(-v));
        out[i] = from_float<T>(v);
    }
}

#define GROUP_NORM_KERNELS(T, SUFFIX)                                                            \
    extern "C" __global__ void group_norm_partials_##SUFFIX(const T* x, float2* partials,       \
                                                            uint64_t span) {                    \
        partial_sums<T>(x, partials, span);                                                      \
    }                                                                                            \
    extern "C" __global__ void group_norm_stats_##SUFFIX(const T* x, const float2* partials,     \
                                                         float2* stats, uint32_t groups,         \
                                                         uint32_t splits, uint64_t span,         \
                                                         float eps) {                            \
        group_stats<T>(x, partials, stats, groups, splits, span, eps);                           \
    }                                                                                            \
    extern "C" __global__ void group_norm_apply_##SUFFIX(                                        \
        const T* x, T* y, const T* weight, const T* bias, const float2* stats,                   \
        uint32_t channels, uint32_t groups_per_image, uint64_t plane_size, int silu) {           \
        normalise<T>(x, y, weight, bias, stats, channels, groups_per_image, plane_size, silu);   \
    }

GROUP_NORM_KERNELS(float, f32)
GROUP_NORM_KERNELS(__half, f16)
GROUP_NORM_KERNELS(__nv_bfloat16, bf16)
