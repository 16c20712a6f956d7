#pragma once
// The extras kernels' score modifiers (softcap, ALiBi) per element, in a form the element loops
// can afford. score_mods.h's modified_score is the definition (and the CPU's code); on the GPU
// its tanhf, its division by the softcap and its 64-bit ALiBi distance came to ~150
// instructions an element, with branches that cut the loop into blocks ptxas cannot schedule
// across (SASS, session 15: the d128 forward extras kernel's loop held 10146 instructions and
// 69 calls to the division's slow path; with a softcap the forward ran at 25-40% of the plain
// kernel's speed). Here: the constants worked out once, one exponential and one reciprocal for
// the tanh (with a series near 0 for large softcaps: common/fast_tanh.h), the ALiBi distance as
// a float.

#include <cfloat>
#include <cstdint>
#include <type_traits>

#include "common/fast_tanh.h"
#include "cuda/common/ptx.cuh"

namespace flashattn::cuda_sm80 {

using cuda::kLog2e;

// 1 / x from rcp.approx (an error of at most one ulp; 1 / inf = 0).
__device__ __forceinline__ float fast_reciprocal(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// How an element loop applies the softcap: none; `absolute`, tanh with an absolute error of
// ~2^-22 (common/fast_tanh.h: c 2^-21 on a score, for c <= kAbsoluteSoftcapMax); `relative`,
// with an error relative to tanh (a series near 0: 6 more instructions an element, SASS sm90),
// for larger softcaps, where c tanh(s / c) ~ s must stay exact.
enum class Softcap { none, absolute, relative };
inline constexpr float kAbsoluteSoftcapMax = 64.0f;  // scores off by at most 3e-5

// One head's softcap and ALiBi, as the element loops use them. The log2-domain score of a dot
// product q.k at ALiBi distance r = query + diagonal - key:
//   softcap c:  c log2e tanh(scale dot / c) - slope log2e |r|
//   otherwise:  scale log2e dot - slope log2e |r|
struct ScoreModifiers {
  float scale;          // the softmax scale
  float dot_to_tanh;    // scale / c, the tanh's argument per unit of dot (at most FLT_MAX)
  float dot_to_exp2;    // 2 log2e scale / c: exp(2 y) = exp2(dot_to_exp2 dot), one multiply
                        // (y * 2 log2e after y = dot * dot_to_tanh is two: ptxas does not
                        // fold them, and the absolute mode, which needs no y, paid 64 FMUL
                        // more per 64 elements at d64, SASS sm90)
  float tanh_to_log2;   // c log2e
  float dot_to_log2;    // scale log2e
  float alibi_to_log2;  // -slope log2e (0 without ALiBi)
  Softcap softcap;

  __device__ __forceinline__ static ScoreModifiers of(float scale, float softcap,
                                                      float alibi_slope) {
    const Softcap mode = softcap <= 0.0f                  ? Softcap::none
                         : softcap <= kAbsoluteSoftcapMax ? Softcap::absolute
                                                          : Softcap::relative;
    // A softcap so small that scale / c overflows would give 0 * inf = NaN at dot 0.
    const float dot_to_tanh = mode != Softcap::none ? fminf(scale / softcap, FLT_MAX) : 0.0f;
    return {scale,
            dot_to_tanh,
            fminf(dot_to_tanh * (2.0f * kLog2e), FLT_MAX),
            softcap * kLog2e,
            scale * kLog2e,
            -alibi_slope * kLog2e,
            mode};
  }

  // The element's log2-domain score; *tanh_value gets the tanh (with a softcap), which the
  // backward's gradient of the softcap needs. distance: r as a float (exact below 2^24).
  // (tanh.approx.f32, FA2's, has a relative error of 2^-11: a softcap of 30 would move a score
  // by up to 0.015, and the LSE past DESIGN.md's 1e-4.)
  template <Softcap kSoftcap>
  __device__ __forceinline__ float log2_score(float dot, float distance, float* tanh_value) const {
    const float bias = alibi_to_log2 * fabsf(distance);
    if constexpr (kSoftcap == Softcap::none) {
      return fmaf(dot_to_log2, dot, bias);
    } else {
      const float e = cuda::fast_exp2(dot * dot_to_exp2);
      const auto reciprocal = [](float x) { return fast_reciprocal(x); };
      *tanh_value = kSoftcap == Softcap::absolute
                        ? tanh_from_exp(e, reciprocal)
                        : tanh_from_exp_relative(dot * dot_to_tanh, e, reciprocal);
      return fmaf(tanh_to_log2, *tanh_value, bias);
    }
  }

  // d(score) / d(dot) for the element whose log2_score gave tanh_value: scale (1 - tanh^2) with
  // a softcap, else scale.
  template <Softcap kSoftcap>
  __device__ __forceinline__ float score_grad(float tanh_value) const {
    if constexpr (kSoftcap == Softcap::none) {
      return scale;
    } else {
      return fmaf(-scale * tanh_value, tanh_value, scale);
    }
  }
};

// The ALiBi distance query + diagonal - first_key as a float, for one row: an element kc keys
// further is at distance - kc (exact while |distance| + kc < 2^24; above, rounded as a float
// distance would be).
__device__ __forceinline__ float alibi_row_distance(int64_t query, int64_t diagonal,
                                                    int64_t first_key) {
  return static_cast<float>(query + diagonal - first_key);
}

// Calls body(std::integral_constant<Softcap, mode>) with the modifiers' softcap mode as a
// compile-time value, so that each element loop is compiled without a branch per element.
template <typename Body>
__device__ __forceinline__ void with_softcap_mode(const ScoreModifiers& modifiers, Body&& body) {
  switch (modifiers.softcap) {
    case Softcap::none: body(std::integral_constant<Softcap, Softcap::none>{}); break;
    case Softcap::absolute: body(std::integral_constant<Softcap, Softcap::absolute>{}); break;
    case Softcap::relative: body(std::integral_constant<Softcap, Softcap::relative>{}); break;
  }
}

}  // namespace flashattn::cuda_sm80
