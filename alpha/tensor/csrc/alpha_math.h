/* Branch-free float math that the compiler can vectorise (glibc's expf is a scalar call).
 *
 * alpha_expf: Cody-Waite range reduction + the Cephes degree-6 polynomial, about 1 ulp; exact
 * overflow to inf, gradual underflow to 0, NaN in -> NaN out. alpha_tanhf is built on it. Written with plain selects and
 * bit casts so `-O3 -march=native` turns loops over it into AVX2/AVX-512 code, and so the vector
 * body and scalar tail give the same bits (results never depend on where a chunk starts).
 */
#ifndef ALPHA_MATH_H
#define ALPHA_MATH_H

#include <stdint.h>
#include <string.h>

static inline float alpha_bits_to_float(int32_t i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}

static inline int32_t alpha_float_to_bits(float f) {
    int32_t i;
    memcpy(&i, &f, 4);
    return i;
}

static inline float alpha_expf(float x) {
    float xc = x > 89.0f ? 89.0f : x;            /* a NaN passes both selects unchanged */
    xc = xc < -104.0f ? -104.0f : xc;
    /* n = round(x / ln2) by the 1.5 * 2^23 trick: exact, vectorisable, no floorf call */
    float t = xc * 1.44269504088896341f + 12582912.0f;
    int32_t n = alpha_float_to_bits(t) - 0x4B400000;
    float fn = t - 12582912.0f;
    float r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    /* 2^n in two factors so n down to -150 underflows gradually and n = 128 overflows to inf */
    int32_t n1 = n >> 1;
    int32_t n2 = n - n1;
    float s1 = alpha_bits_to_float((n1 + 127) << 23);
    float s2 = alpha_bits_to_float((n2 + 127) << 23);
    float res = y * s1 * s2;
    return x != x ? x : res;
}

/* 1 / (1 + exp(-x)): 0 for very negative x, 1 for very positive, no NaN from inf/inf. */
static inline float alpha_sigmoidf(float x) {
    return 1.0f / (1.0f + alpha_expf(-x));
}

/* tanh, branch-free (Cephes tanhf): x + x^3 P(x^2) for |x| < 0.625, where 1 - 2 / (e^2|x| + 1)
 * would lose digits to cancellation, and that form (sign restored) beyond; about 2 ulp. */
static inline float alpha_tanhf(float x) {
    float z = x < 0.0f ? -x : x;
    float s = x * x;
    float p = -5.70498872745e-3f;
    p = p * s + 2.06390887954e-2f;
    p = p * s - 5.37397155531e-2f;
    p = p * s + 1.33314422036e-1f;
    p = p * s - 3.33332819422e-1f;
    float small = p * s * x + x;
    float big = 1.0f - 2.0f / (alpha_expf(z + z) + 1.0f); /* 1 for large z, never inf/inf */
    big = x < 0.0f ? -big : big;
    return z < 0.625f ? small : big;
}

/* Lanes of hand-split reductions (sum += x[i] becomes lanes[i % 32] += x[i], lanes added in
 * order at the end): a fixed lane count keeps the summation order independent of threads and
 * vector width, and 32 independent accumulators hide the add latency (one 8-lane accumulator
 * made layernorm 3x slower). */
#define ALPHA_LANES 32

/* sum of exp(x[i] - m) for i < n: exponentials of 256-element chunks go to a stack buffer, then
 * into ALPHA_LANES lanes (two simple loops vectorise better than one fused loop). */
static inline float alpha_sum_exp(const float *x, float m, int64_t n) {
    float buf[256];
    float lanes[ALPHA_LANES] = {0};
    float tail = 0.0f;
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t k = n - i0 < 256 ? n - i0 : 256;
        for (int64_t i = 0; i < k; i++) buf[i] = alpha_expf(x[i0 + i] - m);
        int64_t i = 0;
        for (; i + ALPHA_LANES <= k; i += ALPHA_LANES)
            for (int l = 0; l < ALPHA_LANES; l++) lanes[l] += buf[i + l];
        for (; i < k; i++) tail += buf[i];
    }
    for (int l = 0; l < ALPHA_LANES; l++) tail += lanes[l];
    return tail;
}

#endif
