/* IEEE binary16 ("fp16") storage for the 16-bit KV cache: floats are rounded to the nearest
 * half (ties to even) when written and widened exactly when read; all arithmetic stays fp32.
 *
 * With F16C (the -march=native build on any x86 of the last decade) a row converts 8 or 16
 * lanes per instruction; without it (the portable build) the scalar functions below do the
 * same rounding bit by bit, so both builds store the same bits (tests/test_kv16.py checks them
 * against Python's struct 'e' format).
 */
#ifndef ALPHA_HALF_H
#define ALPHA_HALF_H

#include <stdint.h>
#include <string.h>

#ifdef __F16C__
#include <immintrin.h>
#endif

/* the half nearest to f (ties to even): overflow gives infinity, NaN stays a (quiet) NaN */
static inline uint16_t half_from_float_portable(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | (ax >> 13) : 0u));
    if (ax >= 0x477ff000u) /* >= 65520: rounds past the largest half, 65504 */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* below 2^-14: a subnormal half (or zero), steps of 2^-24 */
        if (ax < 0x33000000u) return (uint16_t)sign; /* at most 2^-25: rounds to zero */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* value = m * 2^(e - 150), in units of 2^-24: m >> (126 - e) */
        uint32_t q = m >> shift, rest = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        q += rest > halfway || (rest == halfway && (q & 1u));
        return (uint16_t)(sign | q);
    }
    /* normal: drop 13 mantissa bits, rebias the exponent by 127 - 15; a carry out of the
     * mantissa correctly bumps the exponent */
    uint32_t q = (ax >> 13) - (112u << 10), rest = ax & 0x1fffu;
    q += rest > 0x1000u || (rest == 0x1000u && (q & 1u));
    return (uint16_t)(sign | q);
}

static inline float half_to_float_portable(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0x1f) {
        x = sign | 0x7f800000u | (m << 13);
    } else if (e) {
        x = sign | ((e + 112u) << 23) | (m << 13);
    } else if (m) { /* subnormal: m * 2^-24, exact in a float */
        float f = (float)m * (1.0f / 16777216.0f);
        memcpy(&x, &f, 4);
        x |= sign;
    } else {
        x = sign;
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* dst[0..n) = the halves nearest to src[0..n) */
static inline void half_from_floats(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
#ifdef __F16C__
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) dst[i] = half_from_float_portable(src[i]);
}

/* 16 halves at p widened into out[0..16) */
static inline void half_load16(float *out, const uint16_t *p) {
#if defined(__F16C__) && defined(__AVX512F__)
    _mm512_storeu_ps(out, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)));
#elif defined(__F16C__)
    _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)));
    _mm256_storeu_ps(out + 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8))));
#else
    for (int l = 0; l < 16; l++) out[l] = half_to_float_portable(p[l]);
#endif
}

#endif
