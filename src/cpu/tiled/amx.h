// bf16 tile products on Intel AMX (TDPBF16PS), for bf16 problems on CPUs that have it.
//
// Operands are bf16 in the layouts AMX wants: A row-major, B in "VNNI" pairs (element (k, n)
// of B at (k / 2, n, k % 2)). One call computes a whole kQueryTile x kKeyTile score tile or
// adds a whole P.V product, so the tile configuration is loaded once per thread (amx_begin_thread).
#pragma once

#include <cstdint>

namespace flashattn::cpu_tiled {

// AMX-BF16 and AVX512-BF16 on this CPU, and the kernel's permission to use the tile state
// (requested once per process). False on every other CPU: callers use the fp32 kernels then.
// FLASHATTN_CPU_ISA=portable or =avx512 turns it off.
bool amx_bf16_available();

// Loads this thread's tile configuration / releases the tile state. Every thread that calls
// the products below brackets its work with these.
void amx_begin_thread();
void amx_end_thread();

// s[kQueryTile][kKeyTile] (fp32, leading dimension s_ld) = q[kQueryTile][dim_pad] . keys^T,
// with keys packed as pairs [dim_pad / 2][kKeyTile keys][2]. dim_pad is a multiple of 32.
void amx_scores(const uint16_t* q, const uint16_t* keys_packed, int64_t dim_pad, float* s,
                int64_t s_ld);

// c[rows][n] (fp32, leading dimension ldc) += a[rows][depth] . b, with a row-major (rows of
// length depth) and b packed as pairs [depth / 2][n][2]. rows, depth and n are multiples of
// 32. The forward's P.V: a = P, b = value tiles, rows = kQueryTile, depth = keys, n = dim_v_pad.
void amx_accumulate(const uint16_t* a, int64_t rows, int64_t depth, const uint16_t* b_packed,
                    int64_t n, float* c, int64_t ldc);

// x[r][j] = exp(scale * x[r][j] - shifts[j]) for a [rows][kQueryTile] fp32 tile: the
// backward's transposed P^T = exp(S^T - LSE) (shifts +inf give 0, as do x at -inf).
void exp_columns(float* x, int64_t rows, float scale, const float* shifts);

// dst = src [kKeyTile][kQueryTile] (fp32) rounded to bf16 and packed as pairs of rows:
// element (r, j) at dst[(r / 2) * kQueryTile * 2 + j * 2 + r % 2], the b operand of
// amx_accumulate for a product that reduces over r.
void pack_row_pairs_bf16(const float* src, uint16_t* dst);

// dst[j] = bf16(src[j]) (round to nearest even) for j < n.
void convert_to_bf16(const float* src, int64_t n, uint16_t* dst);

}  // namespace flashattn::cpu_tiled
