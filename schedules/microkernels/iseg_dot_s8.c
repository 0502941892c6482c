/* int8 dot product micro-kernel called by tensorized kernels (schedules.tensorize):
 *     return acc + sum_{k < n} a[k] * b[k]        (int8 operands, int32 accumulation, exact)
 * One function, three builds chosen by the compiler's feature macros:
 *   MVE (Cortex-M55 with MVE-I): 16 MACs per VMLADAVA.S8, n must be a multiple of 16;
 *   DSP (M4/M7/M33/M55):         SXTB16 + SMLAD, 2 MACs per SMLAD, n must be a multiple of 4;
 *   otherwise:                   plain C.
 * Integer-only: no floating point in any variant. */
#include <stdint.h>
#if defined(__ARM_FEATURE_MVE)
#include <arm_mve.h>
#elif defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

#pragma GCC poison float double

int32_t iseg_dot_s8(const int8_t *a, const int8_t *b, int32_t n, int32_t acc);

#if !defined(__ARM_FEATURE_MVE) && defined(__ARM_FEATURE_DSP)
static inline uint32_t ror8(uint32_t x) /* GCC folds this into SXTB16's rotate operand */
{
    return (x >> 8) | (x << 24);
}
#endif

int32_t iseg_dot_s8(const int8_t *a, const int8_t *b, int32_t n, int32_t acc)
{
#if defined(__ARM_FEATURE_MVE)
    for (int32_t k = 0; k < n; k += 16) {
        acc = vmladavaq_s8(acc, vld1q_s8(a + k), vld1q_s8(b + k));
    }
#elif defined(__ARM_FEATURE_DSP)
    for (int32_t k = 0; k < n; k += 4) {
        uint32_t a4, b4;
        __builtin_memcpy(&a4, a + k, 4); /* unaligned 32-bit loads */
        __builtin_memcpy(&b4, b + k, 4);
        /* even bytes (0, 2) and odd bytes (1, 3) sign-extended into two 16-bit lanes each */
        acc = __smlad(__sxtb16(a4), __sxtb16(b4), acc);
        acc = __smlad(__sxtb16(ror8(a4)), __sxtb16(ror8(b4)), acc);
    }
#else
    for (int32_t k = 0; k < n; k++) {
        acc += (int32_t)a[k] * (int32_t)b[k];
    }
#endif
    return acc;
}
