// Dropout on a row of a probability tile, by the shared Philox scheme of common/philox.h
// (one call per eight columns, a 16-bit value per element).
#pragma once

#include <cstdint>

#include "flashattn/params.h"

namespace flashattn::cpu_tiled {

// The dropout constants of one problem.
struct DropoutSpec {
  uint64_t seed;
  uint64_t offset;
  uint32_t keep_threshold;  // dropout_keep_threshold(p), on 16-bit values
  float rescale;            // 1 / (1 - p)
};
DropoutSpec make_dropout_spec(const AttentionArgs& args);

// factor[j] = rescale where element (batch_head, row, col0 + j) is kept, 0 where dropped,
// for j < cols. batch_head = batch * heads_q + head; row and col count within the sequence.
void dropout_factors(const DropoutSpec& spec, uint32_t batch_head, int64_t row, int64_t col0,
                     int64_t cols, float* factor);

}  // namespace flashattn::cpu_tiled
