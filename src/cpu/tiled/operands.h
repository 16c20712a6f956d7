// Moves one head of a strided operand (fp32, fp16 or bf16) to and from fp32 working layouts.
#pragma once

#include <cstdint>

#include "cpu/tiled/problem.h"

namespace flashattn::cpu_tiled {

// Which rows a tensor has: q-side (q, out, dout, dq) or k-side (k, v, dk, dv).
enum class Side { query, key };

// Where a run of rows of one head lives in a caller's tensor.
struct HeadRows {
  const Problem* problem;
  const TensorRef* ref;
  Side side;
  int64_t batch_index;
  int64_t head;
  int64_t dim;
  int64_t offset(int64_t row) const {
    return side == Side::query ? problem->q_offset(*ref, batch_index, row, head)
                               : problem->k_offset(*ref, batch_index, row, head);
  }
};

// dst[r * ld + d] = element (row0 + r, d) as fp32, for r < count, d < dim.
void gather_rows(const HeadRows& source, int64_t row0, int64_t count, float* dst, int64_t ld);

// Key tiles, transposed: tile t is [dim][kKeyTile] at dst + t * dim * kKeyTile, holding keys
// t*kKeyTile + c (c < kKeyTile) in column c; keys at or past `count` are zero.
void gather_transposed_tiles(const HeadRows& source, int64_t count, float* dst);

// Element (row0 + r, d) = src[r * ld + d] rounded to the tensor's dtype.
void scatter_rows(const HeadRows& target, int64_t row0, int64_t count, const float* src,
                  int64_t ld);

// Element (row0 + r, d) = 0 for r < count.
void zero_rows(const HeadRows& target, int64_t row0, int64_t count);

}  // namespace flashattn::cpu_tiled
