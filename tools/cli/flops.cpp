// FLOP counts as FlashAttention-2 reports them, and the exact count of visible (query, key) pairs.
#include "flops.h"

#include <algorithm>

#include "common/score_mods.h"

namespace flashattn::cli {

int64_t visible_pairs(const Problem& problem, SequenceLengths lengths) {
  MaskSpec mask{lengths.q, lengths.k, -1, -1};
  effective_window(problem.causal, problem.window_left, problem.window_right, &mask.window_left,
                   &mask.window_right);
  int64_t pairs = 0;
  for (int64_t i = 0; i < lengths.q; ++i) {
    pairs += std::max<int64_t>(0, mask.last_col(i) - mask.first_col(i));
  }
  return pairs;
}

FlopCount count_flops(const Problem& problem) {
  FlopCount count;
  count.fa2_convention = !problem.has_window();
  double pairs = 0;
  for (int64_t b = 0; b < problem.batch; ++b) {
    const SequenceLengths lengths = problem.lengths(b);
    const double all_pairs = static_cast<double>(lengths.q) * static_cast<double>(lengths.k);
    if (problem.has_window()) {
      pairs += static_cast<double>(visible_pairs(problem, lengths));
    } else {
      pairs += problem.causal ? all_pairs / 2 : all_pairs;
    }
  }
  count.forward = 2.0 * pairs * static_cast<double>(problem.heads_q) *
                  static_cast<double>(problem.head_dim + problem.head_dim_v);
  count.backward = 2.5 * count.forward;
  return count;
}

}  // namespace flashattn::cli
