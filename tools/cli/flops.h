// FLOP counts as FlashAttention-2 reports them, and the exact count of visible (query, key) pairs.
#pragma once

#include <cstdint>

#include "problem.h"

namespace flashattn::cli {

// (query, key) pairs of one sequence that the causal flag and the window leave visible,
// counted exactly with the bottom-right alignment of the contract.
int64_t visible_pairs(const Problem& problem, SequenceLengths lengths);

struct FlopCount {
  double forward = 0;   // 2 * pairs * (head_dim + head_dim_v) per query head
  double backward = 0;  // 2.5 * forward
  // true: FA2's convention (all pairs, half of them for causal); false: a sliding window is
  // set and the visible pairs are counted exactly.
  bool fa2_convention = true;
};

FlopCount count_flops(const Problem& problem);

}  // namespace flashattn::cli
