// CUDA's __nv_bfloat16 for the CPU emulation (cuda_emu.h): the top 16 bits
// of a float, rounded to nearest even.
#pragma once
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
    uint16_t bits;
};

inline float __bfloat162float(__nv_bfloat16 h) {
    const uint32_t bits = uint32_t(h.bits) << 16;
    float out;
    std::memcpy(&out, &bits, 4);
    return out;
}

inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return {uint16_t((x >> 16) | 0x40u)};  // NaN stays NaN
    x += 0x7fffu + ((x >> 16) & 1u);
    return {uint16_t(x >> 16)};
}
