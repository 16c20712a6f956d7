// dK / dV destinations of the backward's work items and the ordered sum of group slices.
#include "cpu/tiled/key_gradients.h"

#include <algorithm>
#include <cstring>

namespace flashattn::cpu_tiled {

int64_t group_slices(const BackwardParams& params, int64_t group) {
  constexpr int64_t kMinItems = 8;  // a few per thread on the machines this targets
  const int64_t pairs = params.batch * params.heads_kv;
  if (pairs >= kMinItems) return 1;
  return std::min(group, (kMinItems + pairs - 1) / std::max<int64_t>(pairs, 1));
}

GroupSlice group_slice(int64_t group, int64_t slices, int64_t slice) {
  const int64_t first = group * slice / slices;
  return GroupSlice{first, group * (slice + 1) / slices - first};
}

void KeyGradientSink::store_tile(int64_t col0, int64_t cols, const float* dk, int64_t dk_ld,
                                 const float* dv, int64_t dv_ld) const {
  if (!partial) {
    scatter_rows(dk_rows, col0, cols, dk, dk_ld);
    scatter_rows(dv_rows, col0, cols, dv, dv_ld);
    return;
  }
  const int64_t dim = dk_rows.dim, dim_v = dv_rows.dim;
  for (int64_t c = 0; c < cols; ++c) {
    std::memcpy(partial_dk + (col0 + c) * dim, dk + c * dk_ld, sizeof(float) * dim);
    std::memcpy(partial_dv + (col0 + c) * dim_v, dv + c * dv_ld, sizeof(float) * dim_v);
  }
}

void KeyGradientSink::finish(const Sequence& sequence) const {
  if (partial) return;  // sum_slices writes the tensors
  zero_rows(dk_rows, sequence.used_k, sequence.len_k - sequence.used_k);
  zero_rows(dv_rows, sequence.used_k, sequence.len_k - sequence.used_k);
}

void sum_slices(const Sequence& sequence, const std::vector<const float*>& partial_dk,
                const std::vector<const float*>& partial_dv, const HeadRows& dk_rows,
                const HeadRows& dv_rows) {
  const int64_t used = sequence.used_k;
  const auto add_in_order = [used](const std::vector<const float*>& partials, int64_t dim) {
    std::vector<float> total(partials.front(), partials.front() + used * dim);
    for (size_t slice = 1; slice < partials.size(); ++slice) {
      for (int64_t i = 0; i < used * dim; ++i) total[static_cast<size_t>(i)] += partials[slice][i];
    }
    return total;
  };
  if (used > 0) {
    scatter_rows(dk_rows, 0, used, add_in_order(partial_dk, dk_rows.dim).data(), dk_rows.dim);
    scatter_rows(dv_rows, 0, used, add_in_order(partial_dv, dv_rows.dim).data(), dv_rows.dim);
  }
  zero_rows(dk_rows, used, sequence.len_k - used);
  zero_rows(dv_rows, used, sequence.len_k - used);
}

}  // namespace flashattn::cpu_tiled
