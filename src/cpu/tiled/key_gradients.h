// Where a backward work item puts dK and dV: the caller's tensors, or fp32 partial sums.
//
// A work item is (batch, kv head, slice of the query heads of the group). With one slice per
// group the item owns dK/dV of its kv head and writes them directly; with several, each slice
// holds partial sums that are added afterwards in slice order (sum_slices), so the result is
// still one fixed order of additions.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/tiled/operands.h"
#include "cpu/tiled/problem.h"

namespace flashattn::cpu_tiled {

// Query heads [first, first + count) of a kv head's group.
struct GroupSlice {
  int64_t first = 0;
  int64_t count = 0;
};

// Slices per group: enough (batch, kv head, slice) items to keep the threads busy when there
// are few (batch, kv head) pairs (MQA, small batch). A function of the problem only, never of
// the thread count, so the result is bitwise the same for every thread count.
int64_t group_slices(const BackwardParams& params, int64_t group);
GroupSlice group_slice(int64_t group, int64_t slices, int64_t slice);

struct KeyGradientSink {
  HeadRows dk_rows;
  HeadRows dv_rows;
  bool partial = false;         // false: write the tensors directly
  float* partial_dk = nullptr;  // [used_k][dim] when partial
  float* partial_dv = nullptr;  // [used_k][dim_v] when partial

  // dK / dV of keys [col0, col0 + cols), from fp32 tiles with leading dimensions dk_ld, dv_ld.
  void store_tile(int64_t col0, int64_t cols, const float* dk, int64_t dk_ld, const float* dv,
                  int64_t dv_ld) const;
  // After the last tile: keys past seqused_k take no part, their gradient is 0.
  void finish(const Sequence& sequence) const;
};

// dK / dV of one (batch, kv head) = the partial sums of its slices in slice order (each
// [used_k][dim] / [used_k][dim_v]); written with zeros past used_k.
void sum_slices(const Sequence& sequence, const std::vector<const float*>& partial_dk,
                const std::vector<const float*>& partial_dv, const HeadRows& dk_rows,
                const HeadRows& dv_rows);

}  // namespace flashattn::cpu_tiled
