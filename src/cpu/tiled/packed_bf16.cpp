// Packs bf16 rows of the caller's tensors into the AMX operand layouts (bit copies, no rounding).
#include "cpu/tiled/packed_bf16.h"

#include <algorithm>

namespace flashattn::cpu_tiled {

void pack_key_tiles_bf16(const HeadRows& keys, int64_t count, int64_t dim_pad, uint16_t* dst) {
  const int64_t tiles = (count + kKeyTile - 1) / kKeyTile;
  std::fill(dst, dst + tiles * dim_pad * kKeyTile, uint16_t{0});
  const uint16_t* base = static_cast<const uint16_t*>(keys.ref->data);
  for (int64_t key = 0; key < count; ++key) {
    const uint16_t* row = base + keys.offset(key);
    uint16_t* tile = dst + (key / kKeyTile) * dim_pad * kKeyTile;
    const int64_t column = key % kKeyTile;
    for (int64_t d = 0; d < keys.dim; ++d) {
      tile[((d / 2) * kKeyTile + column) * 2 + d % 2] = row[d];
    }
  }
}

void pack_value_tiles_bf16(const HeadRows& values, int64_t count, int64_t dim_v_pad,
                           uint16_t* dst) {
  const int64_t tiles = (count + kKeyTile - 1) / kKeyTile;
  std::fill(dst, dst + tiles * kKeyTile * dim_v_pad, uint16_t{0});
  const uint16_t* base = static_cast<const uint16_t*>(values.ref->data);
  for (int64_t key = 0; key < count; ++key) {
    const uint16_t* row = base + values.offset(key);
    uint16_t* pair_row =
        dst + (key / kKeyTile) * kKeyTile * dim_v_pad + (key % kKeyTile / 2) * dim_v_pad * 2;
    for (int64_t d = 0; d < values.dim; ++d) pair_row[d * 2 + key % 2] = row[d];
  }
}

void gather_rows_bf16(const HeadRows& source, int64_t row0, int64_t count, int64_t rows_total,
                      int64_t dim_pad, uint16_t* dst) {
  std::fill(dst, dst + rows_total * dim_pad, uint16_t{0});
  const uint16_t* base = static_cast<const uint16_t*>(source.ref->data);
  for (int64_t r = 0; r < count; ++r) {
    std::copy_n(base + source.offset(row0 + r), source.dim, dst + r * dim_pad);
  }
}

}  // namespace flashattn::cpu_tiled
