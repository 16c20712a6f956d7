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

  // Plain scaling (no softcap, no ALiBi, positive scale) commutes with the row max, so
  // finish_scores leaves the raw dots and the softmax's exp applies the scale.
  bool folds_scale() const { return softcap <= 0.0f && !has_alibi && scale > 0.0f; }
  // The scale the softmax's exp still has to apply to finish_scores' output.
  float exp_scale() const { return folds_scale() ? scale : 1.0f; }
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
// where the mask hides the element. With context.folds_scale() the visible elements keep the
// raw dot (the score divided by context.exp_scale()). When `capped` is non-null it receives
// softcap(scale * dot) without the bias (same layout), which the backward's softcap derivative
// needs.
void finish_scores(const ScoreContext& context, int64_t row0, int64_t rows, int64_t col0,
                   int64_t cols, float* s, int64_t ld, float* capped);

// Whether every row of [row0, row0 + rows) sees every column of [col0, col0 + cols).
bool fully_visible(const MaskSpec& mask, int64_t row0, int64_t rows, int64_t col0, int64_t cols);

// finish_scores on a transposed tile: st[c * ld + r] holds the dot of query row0 + r and key
// col0 + c, for c < cols, r < rows. Query columns r in [rows, ld) are set to -inf.
void finish_scores_transposed(const ScoreContext& context, int64_t row0, int64_t rows, int64_t col0,
                              int64_t cols, float* st, int64_t ld, float* capped_t);

}  // namespace flashattn::cpu_tiled
