#pragma once
// The extras kernels' score modifiers (softcap, ALiBi) per element, in a form the element loops
// can afford. score_mods.h's modified_score is the definition (and the CPU's code); on the GPU
// its tanhf, its division by the softcap and its 64-bit ALiBi distance came to ~150
// instructions an element, with branches that cut the loop into blocks ptxas cannot schedule
// across (SASS, session 15: the d128 forward extras kernel's loop held 10146 instructions and
// 69 calls to the division's slow path; with a softcap the forward ran at 25-40% of the plain
// kernel's speed). Here: the constants worked out once, one exponential and one reciprocal for
// the tanh, the ALiBi distance as a float.

#include <cstdint>
#include <type_traits>

#include "cuda/common/ptx.cuh"

namespace flashattn::cuda_sm80 {

inline constexpr float kLog2e = 1.4426950408889634f;

// 1 / x from rcp.approx (an error of at most one ulp; 1 / inf = 0).
__device__ __forceinline__ float fast_reciprocal(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// tanh y from e = 2^(2 log2e y) = e^(2y): 1 - 2 / (1 + e), with an absolute error of a few
// 2^-24 (ex2.approx and rcp.approx), saturating to -1 / 1 where e underflows / overflows.
// tanh.approx.f32 (FA2's) has a relative error of 2^-11: a softcap of 30 would move a score
// by up to 0.015, and the LSE past DESIGN.md's 1e-4.
__device__ __forceinline__ float tanh_of_exp(float e) {
  return fmaf(-2.0f, fast_reciprocal(1.0f + e), 1.0f);
}

// One head's softcap and ALiBi, as the element loops use them. The log2-domain score of a dot
// product q.k at ALiBi distance r = query + diagonal - key:
//   softcap c:  c log2e tanh(scale dot / c) - slope log2e |r|
//   otherwise:  scale log2e dot - slope log2e |r|
struct ScoreModifiers {
  float scale;          // the softmax scale
  float dot_to_exp2;    // 2 log2e scale / c: e^(2 scale dot / c) = 2^(dot dot_to_exp2)
  float tanh_to_log2;   // c log2e
  float dot_to_log2;    // scale log2e
  float alibi_to_log2;  // -slope log2e (0 without ALiBi)
  bool capped;          // softcap c > 0

  __device__ __forceinline__ static ScoreModifiers of(float scale, float softcap,
                                                      float alibi_slope) {
    const bool capped = softcap > 0.0f;
    return {scale,
            capped ? 2.0f * kLog2e * scale / softcap : 0.0f,
            softcap * kLog2e,
            scale * kLog2e,
            -alibi_slope * kLog2e,
            capped};
  }

  // The element's log2-domain score; *tanh_value gets the tanh (kCapped), which the backward's
  // gradient of the softcap needs. distance: r as a float (exact below 2^24).
  template <bool kCapped>
  __device__ __forceinline__ float log2_score(float dot, float distance, float* tanh_value) const {
    const float bias = alibi_to_log2 * fabsf(distance);
    if constexpr (kCapped) {
      *tanh_value = tanh_of_exp(cuda::fast_exp2(dot * dot_to_exp2));
      return fmaf(tanh_to_log2, *tanh_value, bias);
    } else {
      return fmaf(dot_to_log2, dot, bias);
    }
  }

  // d(score) / d(dot) for the element whose log2_score gave tanh_value: scale (1 - tanh^2) with
  // a softcap, else scale.
  template <bool kCapped>
  __device__ __forceinline__ float score_grad(float tanh_value) const {
    if constexpr (kCapped) {
      return fmaf(-scale * tanh_value, tanh_value, scale);
    } else {
      return scale;
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

// Calls body(std::bool_constant<capped>) with the modifiers' softcap as a compile-time flag, so
// that each element loop is compiled without a branch per element.
template <typename Body>
__device__ __forceinline__ void with_softcap_flag(const ScoreModifiers& modifiers, Body&& body) {
  if (modifiers.capped) {
    body(std::true_type{});
  } else {
    body(std::false_type{});
  }
}

}  // namespace flashattn::cuda_sm80
