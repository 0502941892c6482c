/* Register-blocked GEMM micro-kernels called by tensorized kernels (schedules.tensorize), header-only:
 *     c[r * ldc + j] += sum_{kk < k} a[r * lda + kk] * b[j * ldb + kk]     for r < R, j < C
 * i.e. an R x C int32 output tile over a K reduction, with A row-major and B packed column-major (each
 * output column's operands contiguous, as the tensorized kernel packs it once per call). Exact int32
 * accumulation. Every function is iseg_gemm_<a>_<b>_<R>x<C>; operands int8 x int8 (s8_s8) or int16 x int16
 * (s16_s16). One source, three builds chosen by the compiler's feature macros:
 *   MVE (Cortex-M55 with MVE-I): VMLADAVA.S8 (16 MACs) / VMLADAVA.S16 (8 MACs), tail-predicated last chunk;
 *   DSP (M4/M7/M33/M55):         SMLAD (2 MACs); int8 words sign-extended pairwise by SXTB16 (both operands
 *                                the same way, so the lane pairing matches), int16 words go straight in
 *                                (2x2 blocks by LDRD, 12 instructions per 16 MACs, when the strides allow);
 *   otherwise:                   plain C (RISC-V).
 * Loads are 32-bit/128-bit and may be unaligned (lda/ldb are element strides), except LDRD (word-aligned
 * operands only, checked per tile). Integer-only.
 * The generated kernels include this header (deploy.emit_c) and every tile is always inlined into its call site:
 * strides and k become constants, the accumulator tile stays in registers and no call is made per tile. */
#ifndef ISEG_GEMM_H
#define ISEG_GEMM_H
#include <stdint.h>
#if defined(__ARM_FEATURE_MVE)
#include <arm_mve.h>
#elif defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

#pragma GCC poison float double

#define ISEG_INLINE static inline __attribute__((always_inline))

/* The R x C accumulator tile: read from / written back to c (row stride ldc). */
ISEG_INLINE void tile_load(const int R, const int C, const int32_t *c, int32_t ldc, int32_t acc[4][4])
{
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < C; j++) acc[r][j] = c[r * ldc + j];
}

ISEG_INLINE void tile_store(const int R, const int C, int32_t *c, int32_t ldc, int32_t acc[4][4])
{
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < C; j++) c[r * ldc + j] = acc[r][j];
}

#if defined(__ARM_FEATURE_MVE)

/* The whole chunks of a 2x2 tile, register-allocated by hand (GCC rebuilds each row's address every chunk
 * when a row stride does not fit the load's 7-bit offset): per chunk, four post-incremented loads, one per row
 * of A and column of B, and four VMLADAVAs into even core registers ("Te"). */
#define ISEG_MVE_LOOP_2X2(NAME, T, VEC, LOAD_INSN, MLA_INSN)                                                  \
    ISEG_INLINE void NAME(const T *a0, const T *a1, const T *b0, const T *b1, int32_t chunks, int32_t acc[4][4]) \
    {                                                                                                          \
        int32_t c00 = acc[0][0], c01 = acc[0][1], c10 = acc[1][0], c11 = acc[1][1];                            \
        for (; chunks > 0; chunks--) { /* a counted loop: DLS/LE */                                            \
            VEC va0, va1, vb0, vb1;                                                                            \
            __asm__(LOAD_INSN " %q[vb0], [%[b0]], #16\n\t"                                                     \
                    LOAD_INSN " %q[vb1], [%[b1]], #16\n\t"                                                     \
                    LOAD_INSN " %q[va0], [%[a0]], #16\n\t"                                                     \
                    LOAD_INSN " %q[va1], [%[a1]], #16\n\t"                                                     \
                    MLA_INSN " %[c00], %q[va0], %q[vb0]\n\t"                                                   \
                    MLA_INSN " %[c01], %q[va0], %q[vb1]\n\t"                                                   \
                    MLA_INSN " %[c10], %q[va1], %q[vb0]\n\t"                                                   \
                    MLA_INSN " %[c11], %q[va1], %q[vb1]"                                                       \
                    : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1), [c00] "+Te"(c00),             \
                      [c01] "+Te"(c01), [c10] "+Te"(c10), [c11] "+Te"(c11), [va0] "=&w"(va0), [va1] "=&w"(va1), \
                      [vb0] "=&w"(vb0), [vb1] "=&w"(vb1)                                                       \
                    :                                                                                          \
                    : "memory");                                                                               \
        }                                                                                                      \
        acc[0][0] = c00, acc[0][1] = c01, acc[1][0] = c10, acc[1][1] = c11;                                    \
    }
ISEG_MVE_LOOP_2X2(mve_s8_loop_2x2, int8_t, int8x16_t, "vldrb.u8", "vmladava.s8")
ISEG_MVE_LOOP_2X2(mve_s16_loop_2x2, int16_t, int16x8_t, "vldrh.u16", "vmladava.s16")

#define ISEG_GEMM_MVE(NAME, T, LANES, VEC, LOAD, LOADZ, VCTP, MLA, LOOP_2X2)                                \
    ISEG_INLINE void NAME(const int R, const int C, const T *a, int32_t lda, const T *b, int32_t ldb,         \
                          int32_t *c, int32_t ldc, int32_t k)                                                  \
    {                                                                                                          \
        int32_t acc[4][4];                                                                                     \
        tile_load(R, C, c, ldc, acc);                                                                          \
        int32_t kk = 0;                                                                                        \
        if (R == 2 && C == 2 && k >= LANES) {                                                                  \
            kk = k - k % LANES;                                                                                \
            LOOP_2X2(a, a + lda, b, b + ldb, kk / LANES, acc);                                                 \
        }                                                                                                      \
        for (; kk + LANES <= k; kk += LANES) {                                                                 \
            VEC vb[4];                                                                                         \
            _Pragma("GCC unroll 4") for (int j = 0; j < C; j++) vb[j] = LOAD(b + j * ldb + kk);                \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                                              \
                VEC va = LOAD(a + r * lda + kk);                                                               \
                _Pragma("GCC unroll 4") for (int j = 0; j < C; j++) acc[r][j] = MLA(acc[r][j], va, vb[j]);     \
            }                                                                                                  \
        }                                                                                                      \
        if (kk < k) { /* masked lanes load as zero and add nothing */                                          \
            mve_pred16_t p = VCTP(k - kk);                                                                     \
            VEC vb[4];                                                                                         \
            _Pragma("GCC unroll 4") for (int j = 0; j < C; j++) vb[j] = LOADZ(b + j * ldb + kk, p);            \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                                              \
                VEC va = LOADZ(a + r * lda + kk, p);                                                           \
                _Pragma("GCC unroll 4") for (int j = 0; j < C; j++) acc[r][j] = MLA(acc[r][j], va, vb[j]);     \
            }                                                                                                  \
        }                                                                                                      \
        tile_store(R, C, c, ldc, acc);                                                                         \
    }
ISEG_GEMM_MVE(gemm_s8_s8, int8_t, 16, int8x16_t, vld1q_s8, vld1q_z_s8, vctp8q, vmladavaq_s8, mve_s8_loop_2x2)
ISEG_GEMM_MVE(gemm_s16_s16, int16_t, 8, int16x8_t, vld1q_s16, vld1q_z_s16, vctp16q, vmladavaq_s16,
              mve_s16_loop_2x2)

#else

/* acc += A x B^T over the k columns from kk on, one MAC at a time (what the SIMD loop left over). */
#define ISEG_TAIL_MACS(R, C, a, lda, b, ldb, kk, k, acc)                                                       \
    for (; kk < k; kk++) {                                                                                     \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                                    \
        _Pragma("GCC unroll 4") for (int j = 0; j < C; j++)                                                    \
            acc[r][j] += (int32_t)a[r * lda + kk] * (int32_t)b[j * ldb + kk];                                  \
    }

ISEG_INLINE uint32_t load32(const void *p) /* unaligned 32-bit load */
{
    uint32_t word;
    __builtin_memcpy(&word, p, 4);
    return word;
}

#if defined(__ARM_FEATURE_DSP)
ISEG_INLINE uint32_t sxtb16_ror8(uint32_t x) /* SXTB16 with its free rotate: bytes 1 and 3 */
{
    uint32_t result;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(result) : "r"(x));
    return result;
}
#endif

#if defined(__ARM_FEATURE_DSP)
/* acc += A x B^T over whole 4-byte groups of k: per group, one word per row/column, each split by SXTB16 into
 * bytes 0, 2 and bytes 1, 3 as two int16 lanes (the same split for A and B), then two SMLADs per output. */
ISEG_INLINE void dsp_s8_loop(const int R, const int C, const int8_t *pa, const int8_t *pb, int32_t lda,
                             int32_t ldb, const int8_t *end, int32_t acc[4][4])
{
    do {
        uint32_t even[4], odd[4];
#pragma GCC unroll 4
        for (int j = 0; j < C; j++) {
            uint32_t word = load32(pb + j * ldb);
            even[j] = __sxtb16(word);
            odd[j] = sxtb16_ror8(word);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            uint32_t word = load32(pa + r * lda);
            uint32_t a_even = __sxtb16(word), a_odd = sxtb16_ror8(word);
#pragma GCC unroll 4
            for (int j = 0; j < C; j++) acc[r][j] = __smlad(a_odd, odd[j], __smlad(a_even, even[j], acc[r][j]));
        }
        pa += 4;
        pb += 4;
    } while (pa != end);
}
#endif

/* dsp_s8_loop for a 2x2 tile with one stride: 4 loads, 8 SXTB16 and 8 SMLAD per 16 MACs, register-allocated by
 * hand (GCC's allocation of the C loop spills the stride). B's words are split first (b0, b1 even/odd), then
 * row 1 of A and row 0 (whose load steps the pointer). */
ISEG_INLINE void dsp_s8_loop_2x2(const int8_t *pa, const int8_t *pb, int32_t stride, const int8_t *end,
                                 int32_t acc[4][4])
{
    int32_t c00 = acc[0][0], c01 = acc[0][1], c10 = acc[1][0], c11 = acc[1][1];
    for (int32_t groups = (int32_t)(end - pa) >> 2; groups > 0; groups--) { /* a counted loop: DLS/LE */
        uint32_t b0e, b0o, b1e, b1o, ae, ao;
        __asm__("ldr    %[b1o], [%[pb], %[stride]]\n\t"
                "ldr    %[b0o], [%[pb]], #4\n\t"
                "sxtb16 %[b1e], %[b1o]\n\t"
                "sxtb16 %[b1o], %[b1o], ror #8\n\t"
                "sxtb16 %[b0e], %[b0o]\n\t"
                "sxtb16 %[b0o], %[b0o], ror #8\n\t"
                "ldr    %[ao], [%[pa], %[stride]]\n\t"
                "sxtb16 %[ae], %[ao]\n\t"
                "sxtb16 %[ao], %[ao], ror #8\n\t"
                "smlad  %[c10], %[ae], %[b0e], %[c10]\n\t"
                "smlad  %[c11], %[ae], %[b1e], %[c11]\n\t"
                "smlad  %[c10], %[ao], %[b0o], %[c10]\n\t"
                "smlad  %[c11], %[ao], %[b1o], %[c11]\n\t"
                "ldr    %[ao], [%[pa]], #4\n\t"
                "sxtb16 %[ae], %[ao]\n\t"
                "sxtb16 %[ao], %[ao], ror #8\n\t"
                "smlad  %[c00], %[ae], %[b0e], %[c00]\n\t"
                "smlad  %[c01], %[ae], %[b1e], %[c01]\n\t"
                "smlad  %[c00], %[ao], %[b0o], %[c00]\n\t"
                "smlad  %[c01], %[ao], %[b1o], %[c01]"
                : [pa] "+r"(pa), [pb] "+r"(pb), [c00] "+r"(c00), [c01] "+r"(c01), [c10] "+r"(c10), [c11] "+r"(c11),
                  [b0e] "=&r"(b0e), [b0o] "=&r"(b0o), [b1e] "=&r"(b1e), [b1o] "=&r"(b1o), [ae] "=&r"(ae),
                  [ao] "=&r"(ao)
                : [stride] "r"(stride)
                : "memory");
    }
    acc[0][0] = c00, acc[0][1] = c01, acc[1][0] = c10, acc[1][1] = c11;
}

ISEG_INLINE void gemm_s8_s8(const int R, const int C, const int8_t *a, int32_t lda, const int8_t *b, int32_t ldb,
                            int32_t *c, int32_t ldc, int32_t k)
{
    int32_t acc[4][4];
    tile_load(R, C, c, ldc, acc);
    int32_t kk = 0;
#if defined(__ARM_FEATURE_DSP)
    if (k >= 4) {
        kk = k & ~3;
        if (R == 2 && C == 2 && lda == ldb) { /* the usual case: B packed with A's row length, one stride */
            dsp_s8_loop_2x2(a, b, lda, a + kk, acc);
        } else {
            dsp_s8_loop(R, C, a, b, lda, ldb, a + kk, acc);
        }
    }
#endif
    ISEG_TAIL_MACS(R, C, a, lda, b, ldb, kk, k, acc);
    tile_store(R, C, c, ldc, acc);
}

#if defined(__ARM_FEATURE_DSP)
/* acc += A x B^T over whole pairs of k: one word (two int16) per row/column, one SMLAD per output. */
ISEG_INLINE void dsp_s16_loop(const int R, const int C, const int16_t *pa, const int16_t *pb, int32_t lda,
                              int32_t ldb, const int16_t *end, int32_t acc[4][4])
{
    do {
        uint32_t bw[4];
#pragma GCC unroll 4
        for (int j = 0; j < C; j++) bw[j] = load32(pb + j * ldb);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            uint32_t aw = load32(pa + r * lda);
#pragma GCC unroll 4
            for (int j = 0; j < C; j++) acc[r][j] = __smlad(aw, bw[j], acc[r][j]);
        }
        pa += 2;
        pb += 2;
    } while (pa != end);
}

/* dsp_s16_loop for the 2x2 block of the tile at row R0, column C0, register-allocated by hand, loop included: per 4
 * columns of k, one LDRD (two words, four int16) per row of A and column of B and eight SMLADs, i.e. 12
 * instructions per 16 MACs; UNROLL such groups per iteration, then SUBS + BNE. Row 1 and column 1 are read at
 * constant byte offsets from row 0 / column 0 (LDRD's immediate), row 0 and column 0 are post-incremented. LDRD
 * needs word-aligned addresses: see its caller. */
#define ISEG_S16_GROUP_2X2                                                                                     \
    "ldrd   %[b1l], %[b1h], [%[pb], #%c[b_off]]\n\t"                                                         \
    "ldrd   %[b0l], %[b0h], [%[pb]], #8\n\t"                                                                   \
    "ldrd   %[al], %[ah], [%[pa], #%c[a_off]]\n\t"                                                           \
    "smlad  %[c10], %[al], %[b0l], %[c10]\n\t"                                                                 \
    "smlad  %[c10], %[ah], %[b0h], %[c10]\n\t"                                                                 \
    "smlad  %[c11], %[al], %[b1l], %[c11]\n\t"                                                                 \
    "smlad  %[c11], %[ah], %[b1h], %[c11]\n\t"                                                                 \
    "ldrd   %[al], %[ah], [%[pa]], #8\n\t"                                                                     \
    "smlad  %[c00], %[al], %[b0l], %[c00]\n\t"                                                                 \
    "smlad  %[c00], %[ah], %[b0h], %[c00]\n\t"                                                                 \
    "smlad  %[c01], %[al], %[b1l], %[c01]\n\t"                                                                 \
    "smlad  %[c01], %[ah], %[b1h], %[c01]\n\t"
#define ISEG_DSP_S16_BLOCK_2X2(A, B, A_OFFSET, B_OFFSET, GROUPS, UNROLL, ACC, R0, C0)                          \
    do {                                                                                                       \
        const int16_t *pa_ = (A), *pb_ = (B);                                                                  \
        int32_t n_ = (GROUPS) / (UNROLL);                                                                      \
        int32_t c00 = ACC[R0][C0], c01 = ACC[R0][C0 + 1], c10 = ACC[R0 + 1][C0], c11 = ACC[R0 + 1][C0 + 1];    \
        uint32_t al, ah, b0l, b0h, b1l, b1h;                                                                   \
        __asm__("1:\n\t"                                                                                       \
                ".rept %c[unroll]\n\t" ISEG_S16_GROUP_2X2 ".endr\n\t"                                          \
                "subs   %[n], %[n], #1\n\t"                                                                    \
                "bne    1b"                                                                                    \
                : [pa] "+r"(pa_), [pb] "+r"(pb_), [n] "+r"(n_), [c00] "+r"(c00), [c01] "+r"(c01),               \
                  [c10] "+r"(c10), [c11] "+r"(c11), [al] "=&r"(al), [ah] "=&r"(ah), [b0l] "=&r"(b0l),           \
                  [b0h] "=&r"(b0h), [b1l] "=&r"(b1l), [b1h] "=&r"(b1h)                                         \
                : [a_off] "n"(A_OFFSET), [b_off] "n"(B_OFFSET), [unroll] "n"(UNROLL)                           \
                : "cc", "memory");                                                                             \
        ACC[R0][C0] = c00, ACC[R0][C0 + 1] = c01, ACC[R0 + 1][C0] = c10, ACC[R0 + 1][C0 + 1] = c11;            \
    } while (0)
/* A stride (in int16) that LDRD can take as its immediate byte offset, known at compile time (the tile is always
 * inlined into a call with literal strides). */
#define ISEG_LDRD_STRIDE(ld) (__builtin_constant_p(ld) && (ld) > 0 && (ld) % 2 == 0 && (ld) <= 510)
#define ISEG_LDRD_OFFSET(ld) (ISEG_LDRD_STRIDE(ld) ? (ld) * 2 : 0) /* 0 when unused: "n" needs a constant */
#endif

ISEG_INLINE void gemm_s16_s16(const int R, const int C, const int16_t *a, int32_t lda, const int16_t *b,
                              int32_t ldb, int32_t *c, int32_t ldc, int32_t k)
{
    int32_t acc[4][4];
    tile_load(R, C, c, ldc, acc);
    int32_t kk = 0;
#if defined(__ARM_FEATURE_DSP)
    if (R % 2 == 0 && C % 2 == 0 && k >= 4 && ISEG_LDRD_STRIDE(lda) && ISEG_LDRD_STRIDE(ldb)
        && (((uintptr_t)a | (uintptr_t)b) & 3) == 0) { /* 2x2 blocks of LDRD + SMLAD */
        const int32_t groups = k / 4;
#pragma GCC unroll 4
        for (int r = 0; r < R; r += 2)
#pragma GCC unroll 4
            for (int j = 0; j < C; j += 2)
                ISEG_DSP_S16_BLOCK_2X2(a + r * lda, b + j * ldb, ISEG_LDRD_OFFSET(lda), ISEG_LDRD_OFFSET(ldb), groups,
                                       groups % 4 == 0 ? 4 : groups % 2 == 0 ? 2 : 1, acc, r, j);
        kk = k & ~3;
    } else if (k >= 2) {
        kk = k & ~1;
        dsp_s16_loop(R, C, a, b, lda, ldb, a + kk, acc);
    }
    if (kk < k - 1) { /* a pair left after the groups of 4 */
        dsp_s16_loop(R, C, a + kk, b + kk, lda, ldb, a + kk + 2, acc);
        kk += 2;
    }
#endif
    ISEG_TAIL_MACS(R, C, a, lda, b, ldb, kk, k, acc);
    tile_store(R, C, c, ldc, acc);
}

#endif

/* The exported tiles (schedules.tensorize.TILES lists the same shapes). */
#define ISEG_GEMM_TILE(AT, BT, TA, R, C)                                                                       \
    ISEG_INLINE void iseg_gemm_##AT##_##BT##_##R##x##C(const TA *a, int32_t lda, const TA *b, int32_t ldb,     \
                                                       int32_t *c, int32_t ldc, int32_t k)                     \
    {                                                                                                          \
        gemm_##AT##_##BT(R, C, a, lda, b, ldb, c, ldc, k);                                                     \
    }
#define ISEG_GEMM_TILES(AT, BT, TA)                                                                            \
    ISEG_GEMM_TILE(AT, BT, TA, 2, 2)                                                                           \
    ISEG_GEMM_TILE(AT, BT, TA, 2, 3)                                                                           \
    ISEG_GEMM_TILE(AT, BT, TA, 3, 2)                                                                           \
    ISEG_GEMM_TILE(AT, BT, TA, 2, 4)                                                                           \
    ISEG_GEMM_TILE(AT, BT, TA, 4, 2)
ISEG_GEMM_TILES(s8, s8, int8_t)
ISEG_GEMM_TILES(s16, s16, int16_t)

#endif /* ISEG_GEMM_H */
