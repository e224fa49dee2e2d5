// Attention for heads 64 deep, softmax(q·kᵀ·scale)·v, in one kernel (flash
// attention): each warp keeps 16 queries' scores, running maximum and sum
// and output in shared memory and registers while it walks the keys 64 at a
// time, so the [queries × keys] scores never reach global memory. The
// products run on the tensor cores (WMMA, f16 in, f32 accumulate); the
// softmax is in f32. The host side (cuda.rs) launches it only when queries
// and keys are multiples of 64 and every operand is contiguous and aligned.
#include "cuda_common.cuh"
#include <mma.h>

namespace flash {
constexpr int DEPTH = 64;          // values per query, key and value row
constexpr int TILE = 16;           // a WMMA tile's side
constexpr int WARPS = 4;           // warps per block, 16 queries each
constexpr int BLOCK_KEYS = 64;     // keys per step
constexpr int HALF_ROW = 32;       // each lane's share of a row: two lanes per row
}  // namespace flash

// grid (queries / 64, batch·heads), 128 threads. `scale_log2` is the
// softmax scale times log2(e): the kernel exponentiates with exp2.
template <typename T>
__device__ void flash_attention(const T* q, const T* k, const T* v, T* out, uint32_t queries,
                                uint32_t keys, float scale_log2) {
    using namespace nvcuda;
    using namespace flash;
    // 48 KB, the static limit: the key and value tiles, and per warp its
    // scores (f32, then overwritten by its probabilities in T) and output.
    __shared__ __align__(32) T k_tile[BLOCK_KEYS * DEPTH];
    __shared__ __align__(32) T v_tile[BLOCK_KEYS * DEPTH];
    __shared__ __align__(32) float scores[WARPS][TILE * BLOCK_KEYS];
    __shared__ __align__(32) float outputs[WARPS][TILE * DEPTH];
    static_assert(sizeof(k_tile) + sizeof(v_tile) + sizeof(scores) + sizeof(outputs) <= 48 * 1024,
                  "static shared memory is limited to 48 KB");

    const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const uint64_t head = blockIdx.y;
    const uint64_t first = (uint64_t)blockIdx.x * (WARPS * TILE) + warp * TILE;
    float* s = scores[warp];
    T* p = reinterpret_cast<T*>(s);
    float* o = outputs[warp];
    // Lane pair (2r, 2r + 1) owns row r: columns [0, 32) and [32, 64).
    const uint32_t row = lane / 2, column0 = (lane % 2) * HALF_ROW;
    // Lanes start their 32 columns at different places: the same column of
    // 16 rows 64 floats apart would be one shared-memory bank.
    auto column = [&](int j) { return column0 + ((j + lane) % HALF_ROW); };

    wmma::fragment<wmma::matrix_a, TILE, TILE, TILE, T, wmma::row_major> q_frag[DEPTH / TILE];
    for (int d = 0; d < DEPTH / TILE; ++d)
        wmma::load_matrix_sync(q_frag[d], q + (head * queries + first) * DEPTH + d * TILE, DEPTH);
    float row_max = -INFINITY, row_sum = 0.f;
    for (int j = 0; j < HALF_ROW; ++j) o[row * DEPTH + column(j)] = 0.f;

    const uint4* k_head = reinterpret_cast<const uint4*>(k + head * keys * DEPTH);
    const uint4* v_head = reinterpret_cast<const uint4*>(v + head * keys * DEPTH);
    constexpr int CHUNKS = BLOCK_KEYS * DEPTH * sizeof(T) / sizeof(uint4);
    for (uint32_t key0 = 0; key0 < keys; key0 += BLOCK_KEYS) {
        __syncthreads();  // every warp is done with the previous tiles
        const uint64_t offset = (uint64_t)key0 * DEPTH * sizeof(T) / sizeof(uint4);
        for (int i = threadIdx.x; i < CHUNKS; i += blockDim.x) {
            reinterpret_cast<uint4*>(k_tile)[i] = k_head[offset + i];
            reinterpret_cast<uint4*>(v_tile)[i] = v_head[offset + i];
        }
        __syncthreads();

        // This warp's scores: 16 queries × 64 keys.
        for (int n = 0; n < BLOCK_KEYS / TILE; ++n) {
            wmma::fragment<wmma::accumulator, TILE, TILE, TILE, float> s_frag;
            wmma::fill_fragment(s_frag, 0.f);
            for (int d = 0; d < DEPTH / TILE; ++d) {
                // kᵀ's tile: key n·16 + j, depth d·16 + i at k_tile[key·64 + depth].
                wmma::fragment<wmma::matrix_b, TILE, TILE, TILE, T, wmma::col_major> k_frag;
                wmma::load_matrix_sync(k_frag, k_tile + n * TILE * DEPTH + d * TILE, DEPTH);
                wmma::mma_sync(s_frag, q_frag[d], k_frag, s_frag);
            }
            wmma::store_matrix_sync(s + n * TILE, s_frag, BLOCK_KEYS, wmma::mem_row_major);
        }
        __syncwarp();

        // The running softmax of row `row`, half a row per lane.
        float x[HALF_ROW];
        float tile_max = -INFINITY;
        for (int j = 0; j < HALF_ROW; ++j) {
            x[j] = s[row * BLOCK_KEYS + column(j)] * scale_log2;
            tile_max = fmaxf(tile_max, x[j]);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        const float new_max = fmaxf(row_max, tile_max);
        const float correction = exp2f(row_max - new_max);  // 0 on the first step
        float tile_sum = 0.f;
        for (int j = 0; j < HALF_ROW; ++j) {
            x[j] = exp2f(x[j] - new_max);
            tile_sum += x[j];
        }
        tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 1);
        row_sum = row_sum * correction + tile_sum;
        row_max = new_max;
        __syncwarp();  // every lane has read its scores before they are overwritten
        for (int j = 0; j < HALF_ROW; ++j) {
            p[row * BLOCK_KEYS + column(j)] = from_float<T>(x[j]);
            o[row * DEPTH + column(j)] *= correction;
        }
        __syncwarp();

        // output += probabilities · values.
        wmma::fragment<wmma::matrix_a, TILE, TILE, TILE, T, wmma::row_major> p_frag[BLOCK_KEYS / TILE];
        for (int kk = 0; kk < BLOCK_KEYS / TILE; ++kk)
            wmma::load_matrix_sync(p_frag[kk], p + kk * TILE, BLOCK_KEYS);
        for (int n = 0; n < DEPTH / TILE; ++n) {
            wmma::fragment<wmma::accumulator, TILE, TILE, TILE, float> o_frag;
            wmma::load_matrix_sync(o_frag, o + n * TILE, DEPTH, wmma::mem_row_major);
            for (int kk = 0; kk < BLOCK_KEYS / TILE; ++kk) {
                wmma::fragment<wmma::matrix_b, TILE, TILE, TILE, T, wmma::row_major> v_frag;
                wmma::load_matrix_sync(v_frag, v_tile + kk * TILE * DEPTH + n * TILE, DEPTH);
                wmma::mma_sync(o_frag, p_frag[kk], v_frag, o_frag);
            }
            wmma::store_matrix_sync(o + n * TILE, o_frag, DEPTH, wmma::mem_row_major);
        }
        __syncwarp();
    }

    const float inverse = 1.f / row_sum;
    T* out_row = out + (head * queries + first + row) * DEPTH;
    for (int j = 0; j < HALF_ROW; ++j) out_row[column(j)] = from_float<T>(o[row * DEPTH + column(j)] * inverse);
}

// f16 only: WMMA on bf16 needs sm_80, and the kernels are built for sm_75.
extern "C" __global__ void flash_attention_f16(const __half* q, const __half* k, const __half* v,
                                               __half* out, uint32_t queries, uint32_t keys,
                                               float scale_log2) {
    flash_attention<__half>(q, k, v, out, queries, keys, scale_log2);
}
