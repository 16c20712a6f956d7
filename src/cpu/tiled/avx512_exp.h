// Vector exp for the AVX-512 and AMX kernel files (x86-64 GCC/Clang only; include after
// <immintrin.h>). Compiled per function with a target attribute, like the kernels using it.
#pragma once

#include <immintrin.h>

namespace flashattn::cpu_tiled {

// exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln(2)/2, exp(r) by its degree-6 Taylor
// polynomial (relative error below 2e-7, about one fp32 ulp). Inputs below -87 (including the
// -inf of masked scores) give exactly 0 instead of a denormal.
__attribute__((target("avx512f,avx512dq,fma"))) inline __m512 exp_vector(__m512 x) {
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln 2, high part
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);      // ln 2, low part
  __m512 poly = _mm512_set1_ps(1.0f / 720.0f);
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f / 120.0f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f / 24.0f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f / 6.0f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(0.5f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~underflow), _mm512_scalef_ps(poly, n));
}

// 2^t in the lanes of `keep`, exactly 0 in the others: n = round(t), 2^(t - n) (t - n is exact,
// |t - n| <= 1/2) by the degree-6 Taylor polynomial of exp((t - n) ln 2), relative error below
// 2e-7 as above. Callers clear from `keep` the lanes with t below -125 (whose result would
// leave the normal range; -inf gives NaN in the dropped lanes) and the lanes past the data.
// Four instructions fewer than exp_vector of a scaled argument: the scale by log2(e) goes into
// the caller's fmsub, the range reduction is one subtraction, the clamp and the final masking
// fold into a masked SCALEF.
__attribute__((target("avx512f,avx512dq,fma"))) inline __m512 exp2_kept(__mmask16 keep, __m512 t) {
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(t, n);
  __m512 poly = _mm512_set1_ps(1.54035297e-4f);  // ln(2)^k / k!, k = 6 .. 0
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.33335579e-3f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(9.61812865e-3f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(5.55041097e-2f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(2.40226507e-1f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(6.93147182e-1f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f));
  return _mm512_maskz_scalef_ps(keep, poly, n);
}

}  // namespace flashattn::cpu_tiled
