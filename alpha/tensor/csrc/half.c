/* The 16-bit KV cache's conversions (half.h) as calls, for the tests: they check the build's
 * path (F16C where the compiler targets it) and the portable one against Python's struct 'e'. */
#include "alpha.h"
#include "half.h"

/* out[0..n) = the halves nearest to x[0..n), by the build's path or (portable) bit by bit */
void f16_from_f32(uint16_t *out, const float *x, int64_t n, int portable) {
    if (!portable) {
        half_from_floats(out, x, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) out[i] = half_from_float_portable(x[i]);
}

/* out[0..n) = the halves h[0..n) widened, 16 at a time as the cache's reads do, or (portable)
 * one by one */
void f16_to_f32(float *out, const uint16_t *h, int64_t n, int portable) {
    int64_t i = 0;
    for (; !portable && i + 16 <= n; i += 16) half_load16(out + i, h + i);
    for (; i < n; i++) out[i] = half_to_float_portable(h[i]);
}

/* 1 when this build converts with F16C instructions, 0 when it runs the portable code */
int f16_native(void) {
#ifdef __F16C__
    return 1;
#else
    return 0;
#endif
}
