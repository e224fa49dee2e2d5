// The engine's CUDA kernels, compiled for the CPU emulation (cuda_emu.h is
// force-included), and extern "C" entry points that launch them in the
// order and with the operands the engine's host code does
// (engine/src/ops/*/cuda.rs). The grids are the caller's: the kernels must
// be right for any.
#include "group_norm/group_norm.cu"
#include "softmax/softmax.cu"
#include "attention/flash_attention.cu"
#include "transpose/transpose.cu"

#include <cstdlib>

namespace {
constexpr unsigned GROUP_NORM_THREADS = 256;

template <typename T>
using GroupNormPartials = void (*)(const T*, float2*, uint64_t);
template <typename T>
using GroupNormStats = void (*)(const T*, const float2*, float2*, uint32_t, uint32_t, uint64_t, float);
template <typename T>
using GroupNormApply = void (*)(const T*, T*, const T*, const T*, const float2*, uint32_t, uint32_t,
                                uint64_t, int);

template <typename T>
void group_norm(GroupNormPartials<T> partials_kernel, GroupNormStats<T> stats_kernel,
                GroupNormApply<T> apply_kernel, const T* x, T* y, const T* weight, const T* bias,
                uint32_t batch, uint32_t channels, uint64_t plane, uint32_t groups_per_image, float eps,
                int silu, uint32_t splits, uint32_t plane_blocks) {
    const uint32_t groups = batch * groups_per_image, planes = batch * channels;
    const uint64_t span = channels / groups_per_image * plane;
    std::vector<float2> partials(size_t(groups) * splits), stats(groups);
    const dim3 threads{GROUP_NORM_THREADS, 1, 1};
    emu::launch(partials_kernel, dim3{splits, groups, 1}, threads, x, partials.data(), span);
    emu::launch(stats_kernel, dim3{(groups + GROUP_NORM_THREADS - 1) / GROUP_NORM_THREADS, 1, 1}, threads, x,
                partials.data(), stats.data(), groups, splits, span, eps);
    emu::launch(apply_kernel, dim3{plane_blocks, planes, 1}, threads, x, y, weight, bias, stats.data(),
                channels, groups_per_image, plane, silu);
}
}  // namespace

#define GROUP_NORM_ENTRY(T, SUFFIX)                                                                   \
    extern "C" void emu_group_norm_##SUFFIX(const T* x, T* y, const T* weight, const T* bias,        \
                                            uint32_t batch, uint32_t channels, uint64_t plane,       \
                                            uint32_t groups, float eps, int silu, uint32_t splits,   \
                                            uint32_t plane_blocks) {                                 \
        group_norm<T>(group_norm_partials_##SUFFIX, group_norm_stats_##SUFFIX,                       \
                      group_norm_apply_##SUFFIX, x, y, weight, bias, batch, channels, plane, groups, \
                      eps, silu, splits, plane_blocks);                                              \
    }

GROUP_NORM_ENTRY(float, f32)
GROUP_NORM_ENTRY(__half, f16)
GROUP_NORM_ENTRY(__nv_bfloat16, bf16)

#define SOFTMAX_ENTRY(T, SUFFIX)                                                                    \
    extern "C" void emu_softmax_##SUFFIX(const T* x, T* y, uint32_t rows, uint32_t width,          \
                                         uint32_t threads) {                                       \
        emu::launch(softmax_rows_##SUFFIX, dim3{rows, 1, 1}, dim3{threads, 1, 1}, x, y, width);    \
    }

SOFTMAX_ENTRY(float, f32)
SOFTMAX_ENTRY(__half, f16)
SOFTMAX_ENTRY(__nv_bfloat16, bf16)

#define TRANSPOSE_ENTRY(T, SUFFIX)                                                              \
    extern "C" void emu_transpose_##SUFFIX(const T* x, T* y, uint32_t rows, uint32_t cols,     \
                                           uint32_t grid_x, uint32_t grid_y, uint32_t grid_z,  \
                                           uint32_t threads) {                                 \
        emu::launch(transpose_batched_##SUFFIX, dim3{grid_x, grid_y, grid_z}, dim3{threads, 1, 1}, \
                    x, y, rows, cols);                                                          \
    }

TRANSPOSE_ENTRY(float, f32)
TRANSPOSE_ENTRY(__half, f16)
TRANSPOSE_ENTRY(__nv_bfloat16, bf16)

namespace {
// A copy of host values where device memory would be: 256-byte aligned, as
// CUDA's allocations are (the WMMA loads check it).
template <typename T>
struct DeviceCopy {
    explicit DeviceCopy(const T* values, size_t n)
        : n(n), data(static_cast<T*>(std::aligned_alloc(256, (n * sizeof(T) + 255) / 256 * 256))) {
        if (values) std::memcpy(data, values, n * sizeof(T));
    }
    ~DeviceCopy() { std::free(data); }
    DeviceCopy(const DeviceCopy&) = delete;
    DeviceCopy& operator=(const DeviceCopy&) = delete;
    size_t n;
    T* data;
};
}  // namespace

extern "C" void emu_flash_attention_f16(const __half* q, const __half* k, const __half* v, __half* out,
                                        uint32_t heads, uint32_t queries, uint32_t keys, float scale_log2) {
    using namespace flash;
    const size_t q_len = size_t(heads) * queries * DEPTH, k_len = size_t(heads) * keys * DEPTH;
    DeviceCopy<__half> dq(q, q_len), dk(k, k_len), dv(v, k_len), dout(nullptr, q_len);
    emu::launch(flash_attention_f16, dim3{queries / (WARPS * TILE), heads, 1}, dim3{WARPS * 32, 1, 1},
                dq.data, dk.data, dv.data, dout.data, queries, keys, scale_log2);
    std::memcpy(out, dout.data, q_len * sizeof(__half));
}
