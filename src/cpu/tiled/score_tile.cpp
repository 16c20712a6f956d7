// Score pipeline on a tile, with a fast path for plain scaling (no softcap, no ALiBi).
#include "cpu/tiled/score_tile.h"

#include <algorithm>
#include <limits>

namespace flashattn::cpu_tiled {

ColumnRange visible_columns(const MaskSpec& mask, int64_t row0, int64_t rows) {
  if (rows <= 0) return {0, 0};
  return {mask.first_col(row0), mask.last_col(row0 + rows - 1)};
}

void finish_scores(const ScoreContext& context, int64_t row0, int64_t rows, int64_t col0,
                   int64_t cols, float* s, int64_t ld, float* capped) {
  constexpr float kHidden = -std::numeric_limits<float>::infinity();
  const bool plain = context.softcap <= 0.0f && !context.has_alibi;
  const bool fold = context.folds_scale();
  const int64_t diagonal = context.mask.diagonal();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = row0 + r;
    float* scores = s + r * ld;
    float* capped_row = capped != nullptr ? capped + r * ld : nullptr;
    if (plain) {
      if (!fold) {
        for (int64_t j = 0; j < cols; ++j) scores[j] *= context.scale;
      }
      if (capped_row != nullptr) std::copy(scores, scores + cols, capped_row);
    } else {
      for (int64_t j = 0; j < cols; ++j) {
        // modified_score(dot, ...) == capped + bias; capped is kept apart for the backward.
        const float capped_score =
            modified_score<float>(scores[j], context.scale, context.softcap, 0.0f);
        const float bias = context.has_alibi
                               ? alibi_bias<float>(context.alibi_slope, row, col0 + j, diagonal)
                               : 0.0f;
        if (capped_row != nullptr) capped_row[j] = capped_score;
        scores[j] = capped_score + bias;
      }
    }
    const int64_t first = std::clamp<int64_t>(context.mask.first_col(row) - col0, 0, cols);
    const int64_t last = std::clamp<int64_t>(context.mask.last_col(row) - col0, first, cols);
    std::fill(scores, scores + first, kHidden);
    std::fill(scores + last, scores + cols, kHidden);
  }
}

bool fully_visible(const MaskSpec& mask, int64_t row0, int64_t rows, int64_t col0, int64_t cols) {
  // first_col and last_col grow with the row: the last row has the largest first column, the
  // first row the smallest last column.
  return rows > 0 && mask.first_col(row0 + rows - 1) <= col0 && mask.last_col(row0) >= col0 + cols;
}

void finish_scores_transposed(const ScoreContext& context, int64_t row0, int64_t rows, int64_t col0,
                              int64_t cols, float* st, int64_t ld, float* capped_t) {
  constexpr float kHidden = -std::numeric_limits<float>::infinity();
  const bool fold = context.folds_scale();
  const int64_t diagonal = context.mask.diagonal();
  for (int64_t c = 0; c < cols; ++c) {
    const int64_t col = col0 + c;
    float* scores = st + c * ld;
    float* capped_row = capped_t != nullptr ? capped_t + c * ld : nullptr;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = row0 + r;
      if (!context.mask.visible(row, col)) {
        scores[r] = kHidden;
        continue;
      }
      if (fold) continue;  // the raw dot; exp applies the scale
      const float capped_score =
          modified_score<float>(scores[r], context.scale, context.softcap, 0.0f);
      const float bias =
          context.has_alibi ? alibi_bias<float>(context.alibi_slope, row, col, diagonal) : 0.0f;
      if (capped_row != nullptr) capped_row[r] = capped_score;
      scores[r] = capped_score + bias;
    }
    std::fill(scores + rows, scores + ld, kHidden);
  }
}

}  // namespace flashattn::cpu_tiled
