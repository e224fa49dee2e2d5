// CUDA's __half for the CPU emulation (cuda_emu.h): IEEE binary16 bits,
// converted from float with round-to-nearest-even as the GPU does.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

struct __half {
    uint16_t bits;
};
using half = __half;

inline float __half2float(__half h) {
    const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
    const uint32_t exponent = (h.bits >> 10) & 0x1fu, mantissa = h.bits & 0x3ffu;
    uint32_t bits;
    if (exponent == 0) {
        const float value = std::ldexp(float(mantissa), -24);
        std::memcpy(&bits, &value, 4);
        bits |= sign;
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
    }
    float out;
    std::memcpy(&out, &bits, 4);
    return out;
}

inline __half __float2half(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
    const uint32_t magnitude = x & 0x7fffffffu;
    if (magnitude >= 0x7f800000u) return {uint16_t(sign | (magnitude > 0x7f800000u ? 0x7e00u : 0x7c00u))};
    if (magnitude >= 0x477ff000u) return {uint16_t(sign | 0x7c00u)};  // rounds past 65504
    if (magnitude < 0x38800000u) {                                    // a subnormal half
        float absolute;
        std::memcpy(&absolute, &magnitude, 4);
        return {uint16_t(sign | uint16_t(std::nearbyint(absolute * 16777216.0f)))};
    }
    uint32_t h = ((((magnitude >> 23) - 127 + 15) << 10) | ((magnitude & 0x7fffffu) >> 13));
    const uint32_t rest = magnitude & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return {uint16_t(sign | h)};
}
