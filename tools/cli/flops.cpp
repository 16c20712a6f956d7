// FLOP counts as FlashAttention-2 reports them, and the exact count of visible (query, key) pairs.
#include "flops.h"

#include <algorithm>

namespace flashattn::cli {

int64_t visible_pairs(const Problem& problem, SequenceLengths lengths) {
  const int64_t right = problem.causal ? 0 : problem.window_right;
  const int64_t left = problem.window_left;
  const int64_t shift = lengths.k - lengths.q;  // query i is aligned with key i + shift
  int64_t pairs = 0;
  for (int64_t i = 0; i < lengths.q; ++i) {
    const int64_t first = left < 0 ? 0 : std::max<int64_t>(0, i + shift - left);
    const int64_t last = right < 0 ? lengths.k - 1 : std::min(lengths.k - 1, i + shift + right);
    pairs += std::max<int64_t>(0, last - first + 1);
  }
  return pairs;
}

FlopCount count_flops(const Problem& problem) {
  FlopCount count;
  const bool has_window =
      problem.window_left >= 0 || (!problem.causal && problem.window_right >= 0);
  count.fa2_convention = !has_window;
  double pairs = 0;
  for (int64_t b = 0; b < problem.batch; ++b) {
    const SequenceLengths lengths = problem.lengths(b);
    const double all_pairs = static_cast<double>(lengths.q) * static_cast<double>(lengths.k);
    if (has_window) {
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
