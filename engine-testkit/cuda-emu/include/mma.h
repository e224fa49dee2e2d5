// CUDA's WMMA API (nvcuda::wmma) for the CPU emulation (cuda_emu.h). Every
// lane holds the whole 16×16 tile, so a kernel must treat fragments as
// opaque, as the API asks (fill_fragment, loads, stores, mma_sync only).
// Stores write each element from one lane, so a read of stored memory by
// other lanes without a __syncwarp races here as on a GPU. A load returns
// only when the whole warp has read (one instruction for the warp on a
// GPU), so a later store to the same tile does not race with it. Products
// accumulate in f32, as the tensor cores do.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <type_traits>

#include "cuda_fp16.h"

namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

// The GPU's rules for a tile's memory: 256-bit aligned, and a leading
// dimension of whole 128-bit words (8 halves, 4 floats).
template <typename T> void check_tile(const T* p, unsigned ldm) {
    if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || (ldm * sizeof(T)) % 16 != 0)
        throw std::invalid_argument("wmma: a tile pointer or leading dimension breaks the alignment rules");
}

inline float as_float(float x) { return x; }
inline float as_float(__half x) { return __half2float(x); }

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
    static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
    static constexpr int num_elements = rows * cols;
    T x[num_elements];
};

template <typename Use, int M, int N, int K, typename T, typename Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* p, unsigned ldm) {
    using F = fragment<Use, M, N, K, T, Layout>;
    check_tile(p, ldm);
    for (int r = 0; r < F::rows; ++r)
        for (int c = 0; c < F::cols; ++c)
            f.x[r * F::cols + c] = std::is_same_v<Layout, row_major> ? p[r * ldm + c] : p[c * ldm + r];
    __syncwarp();
}

template <int M, int N, int K, typename T>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm, layout_t layout) {
    check_tile(p, ldm);
    for (int r = 0; r < M; ++r)
        for (int c = 0; c < N; ++c)
            f.x[r * N + c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
    __syncwarp();
}

template <int M, int N, int K, typename T>
void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout) {
    check_tile(p, ldm);
    const unsigned lane = threadIdx.x % 32;
    for (int i = int(lane); i < M * N; i += 32) {
        const int r = i / N, c = i % N;
        (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[i];
    }
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& value) {
    for (auto& x : f.x) x = value;
}

template <int M, int N, int K, typename A, typename LA, typename B, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, A, LA>& a,
              const fragment<matrix_b, M, N, K, B, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
    float result[M * N];
    for (int m = 0; m < M; ++m)
        for (int n = 0; n < N; ++n) {
            float sum = c.x[m * N + n];
            for (int k = 0; k < K; ++k) sum += as_float(a.x[m * K + k]) * as_float(b.x[k * N + n]);
            result[m * N + n] = sum;
        }
    for (int i = 0; i < M * N; ++i) d.x[i] = result[i];
}
}  // namespace nvcuda::wmma
