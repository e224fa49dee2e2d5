// Runs the engine's CUDA kernels on the CPU, for tests on machines without a
// GPU: each CUDA thread of a block is a host thread, blocks run one after
// another (so a kernel's `__shared__` statics are its block's shared
// memory), and __syncthreads, __syncwarp and warp shuffles are barriers.
// Force-included before a kernel's source, with this folder's cuda_fp16.h,
// cuda_bf16.h and mma.h standing in for CUDA's. One-dimensional blocks of
// whole warps only, as the engine's kernels use.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct uint3 {
    unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct float2 {
    float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};

inline thread_local uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

inline float __expf(float x) { return std::exp(x); }

namespace emu {
// The barriers and shuffle slots of the block that runs now.
struct Block {
    explicit Block(unsigned threads) : all(threads) {
        for (unsigned w = 0; w < threads / 32; ++w) warps.push_back(std::make_unique<std::barrier<>>(32));
    }
    std::barrier<> all;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    uint32_t slots[32][32];
};
inline Block* block = nullptr;
}  // namespace emu

inline void __syncthreads() { emu::block->all.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::block->warps[threadIdx.x / 32]->arrive_and_wait(); }

template <typename T> T __shfl_xor_sync(unsigned, T value, int lane_mask) {
    static_assert(sizeof(T) == 4, "32-bit shuffles only");
    uint32_t* slots = emu::block->slots[threadIdx.x / 32];
    const unsigned lane = threadIdx.x % 32;
    std::memcpy(&slots[lane], &value, 4);
    __syncwarp();
    T other;
    std::memcpy(&other, &slots[lane ^ unsigned(lane_mask)], 4);
    __syncwarp();
    return other;
}

namespace emu {
// One launch at a time in the process: the block, the grid's sizes and the
// kernels' shared memory are global.
inline std::mutex launching;

// kernel<<<grid, threads>>>(args...), returning when every block is done.
// The launch's host threads run block after block (each block with fresh
// barriers); a thread that returns early leaves its block's barriers, as on
// a GPU.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 threads, Args... args) {
    const std::lock_guard<std::mutex> one_at_a_time(launching);
    if (threads.y != 1 || threads.z != 1 || threads.x % 32 != 0 || threads.x == 0 || threads.x > 1024)
        throw std::invalid_argument("emu::launch: one-dimensional blocks of whole warps only");
    gridDim = grid;
    blockDim = threads;
    // Twice per block, the host and every thread: the block starts, ends.
    std::barrier<> phase(threads.x + 1);
    uint3 current;
    bool done = false;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads.x; ++t)
        pool.emplace_back([&, t] {
            threadIdx = {t, 0, 0};
            for (;;) {
                phase.arrive_and_wait();
                if (done) return;
                blockIdx = current;
                kernel(static_cast<Params>(args)...);
                block->warps[t / 32]->arrive_and_drop();
                block->all.arrive_and_drop();
                phase.arrive_and_wait();
            }
        });
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                Block running(threads.x);
                block = &running;
                current = {x, y, z};
                phase.arrive_and_wait();
                phase.arrive_and_wait();
            }
    done = true;
    phase.arrive_and_wait();
    for (auto& thread : pool) thread.join();
    block = nullptr;
}
}  // namespace emu
