// Keep factors of a tile row: one Philox4x32-10 call serves eight consecutive columns.
#include "cpu/tiled/dropout_tile.h"

#include "common/philox.h"

namespace flashattn::cpu_tiled {

DropoutSpec make_dropout_spec(const AttentionArgs& args) {
  return DropoutSpec{args.dropout_seed, args.dropout_offset, dropout_keep_threshold(args.dropout_p),
                     1.0f / (1.0f - args.dropout_p)};
}

void dropout_factors(const DropoutSpec& spec, uint32_t batch_head, int64_t row, int64_t col0,
                     int64_t cols, float* factor) {
  int64_t j = 0;
  while (j < cols) {
    const int64_t col = col0 + j;
    const Philox4 words =
        dropout_random_words(spec.seed, spec.offset, batch_head, static_cast<uint32_t>(row),
                             static_cast<uint32_t>(col >> 3));
    // The words cover columns 8*(col/8) .. 8*(col/8)+7; col0 need not be a multiple of 8.
    for (int64_t slot = col & 7; slot < 8 && j < cols; ++slot, ++j) {
      factor[j] = dropout_value(words, static_cast<uint32_t>(slot)) < spec.keep_threshold
                      ? spec.rescale
                      : 0.0f;
    }
  }
}

}  // namespace flashattn::cpu_tiled
