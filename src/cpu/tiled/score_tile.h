// The contract's score pipeline (scale, softcap, ALiBi, mask) applied to a tile of raw dots.
#pragma once

#include <cstdint>

#include "common/score_mods.h"

namespace flashattn::cpu_tiled {

// One (sequence, head) of the problem, as the score pipeline needs it.
struct ScoreContext {
  MaskSpec mask;
  float scale;
  float softcap;      // 0: off
  float alibi_slope;  // used when has_alibi
  bool has_alibi;
};

// Visible columns of rows [row0, row0 + rows): the union of their [first_col, last_col), which
// is one interval because both bounds grow with the row. Empty when first >= last.
struct ColumnRange {
  int64_t first;
  int64_t last;
};
ColumnRange visible_columns(const MaskSpec& mask, int64_t row0, int64_t rows);

// Turns raw q.k dots of rows [row0, row0 + rows) x columns [col0, col0 + cols) (tile s with
// leading dimension ld) into modified scores in place: softcap(scale * dot) + ALiBi, and -inf
// where the mask hides the element. When `capped` is non-null it receives softcap(scale * dot)
// without the bias (same layout), which the backward's softcap derivative needs.
void finish_scores(const ScoreContext& context, int64_t row0, int64_t rows, int64_t col0,
                   int64_t cols, float* s, int64_t ld, float* capped);

}  // namespace flashattn::cpu_tiled
