// The score pipeline of the contract, written once for every backend:
// scale -> softcap -> ALiBi bias -> mask -> softmax (-> dropout).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/host_device.h"

namespace flashattn {

// Bottom-right aligned visibility for one (row, col) of one sequence.
// seqlen_q / seqlen_k here are the actual lengths of that sequence (varlen: per sequence;
// seqused_k: the used key count). window_left/right: -1 is unbounded; causal sets right = 0.
struct MaskSpec {
  int64_t seqlen_q;
  int64_t seqlen_k;
  int64_t window_left;   // -1: unbounded
  int64_t window_right;  // -1: unbounded

  // Diagonal offset: query row i is aligned with key column i + diagonal.
  FLASHATTN_HD int64_t diagonal() const { return seqlen_k - seqlen_q; }

  FLASHATTN_HD bool visible(int64_t row, int64_t col) const {
    if (col < 0 || col >= seqlen_k) return false;
    const int64_t aligned = row + diagonal();
    if (window_right >= 0 && col > aligned + window_right) return false;
    if (window_left >= 0 && col < aligned - window_left) return false;
    return true;
  }

  // Half-open range [first, last) of columns row may see; empty when first >= last.
  FLASHATTN_HD int64_t first_col(int64_t row) const {
    const int64_t lo = window_left >= 0 ? row + diagonal() - window_left : 0;
    return lo < 0 ? 0 : lo;
  }
  FLASHATTN_HD int64_t last_col(int64_t row) const {
    const int64_t hi = window_right >= 0 ? row + diagonal() + window_right + 1 : seqlen_k;
    return hi > seqlen_k ? seqlen_k : hi;
  }
};

// Effective (left, right) window for the causal flag and explicit window values.
FLASHATTN_HD void effective_window(bool causal, int64_t window_left, int64_t window_right,
                                   int64_t* left, int64_t* right) {
  *left = window_left;
  *right = causal ? 0 : window_right;  // as in flash_attn: causal overrides the right window
}

// ALiBi bias for one (row, col): -slope * |row + seqlen_k - seqlen_q - col|.
template <typename Real>
FLASHATTN_HD Real alibi_bias(Real slope, int64_t row, int64_t col, int64_t diagonal) {
  const int64_t distance = row + diagonal - col;
  return -slope * static_cast<Real>(distance < 0 ? -distance : distance);
}

// Score of one element before masking: softcap(scale * dot) + alibi.
// With softcap c > 0 the scale is applied inside the tanh: c * tanh(scale * dot / c).
template <typename Real>
FLASHATTN_HD Real modified_score(Real dot, Real scale, Real softcap, Real bias) {
  Real s = dot * scale;
  if (softcap > Real(0)) s = softcap * std::tanh(s / softcap);
  return s + bias;
}

// d(modified_score)/d(dot): the factor that turns dS (w.r.t. the modified score) into the
// gradient w.r.t. the raw dot product q.k. `capped` is c * tanh(scale*dot/c), i.e. the
// softcapped score without bias.
template <typename Real>
FLASHATTN_HD Real modified_score_grad(Real capped, Real scale, Real softcap) {
  if (softcap > Real(0)) {
    const Real t = capped / softcap;
    return scale * (Real(1) - t * t);
  }
  return scale;
}

}  // namespace flashattn
