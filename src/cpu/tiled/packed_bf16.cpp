// Packs bf16 rows of the caller's tensors into the AMX operand layouts (bit copies, no rounding).
#include "cpu/tiled/packed_bf16.h"

#include <algorithm>
#include <cstring>

namespace flashattn::cpu_tiled {

// A pair of consecutive bf16 along the head dim is one 32-bit word of the row, so packing K is
// a transpose of 32-bit words, [keys][dim / 2] -> [dim / 2][keys].
void pack_key_tiles_bf16(const HeadRows& keys, int64_t count, int64_t dim_pad, uint16_t* dst) {
  const int64_t tiles = (count + kKeyTile - 1) / kKeyTile;
  std::fill(dst, dst + tiles * dim_pad * kKeyTile, uint16_t{0});
  const uint16_t* base = static_cast<const uint16_t*>(keys.ref->data);
  const int64_t whole_pairs = keys.dim / 2;
  for (int64_t key = 0; key < count; ++key) {
    const uint16_t* row = base + keys.offset(key);
    uint32_t* tile = reinterpret_cast<uint32_t*>(dst + (key / kKeyTile) * dim_pad * kKeyTile);
    const int64_t column = key % kKeyTile;
    for (int64_t pair = 0; pair < whole_pairs; ++pair) {
      uint32_t word;
      std::memcpy(&word, row + 2 * pair, sizeof(word));
      tile[pair * kKeyTile + column] = word;
    }
    if (keys.dim % 2 != 0) tile[whole_pairs * kKeyTile + column] = row[keys.dim - 1];
  }
}

// Keys 2i and 2i+1 interleave element by element into one row of 32-bit words.
void pack_value_tiles_bf16(const HeadRows& values, int64_t count, int64_t dim_v_pad,
                           uint16_t* dst) {
  const int64_t tiles = (count + kKeyTile - 1) / kKeyTile;
  std::fill(dst, dst + tiles * kKeyTile * dim_v_pad, uint16_t{0});
  const uint16_t* base = static_cast<const uint16_t*>(values.ref->data);
  for (int64_t key = 0; key < count; key += 2) {
    const uint16_t* even = base + values.offset(key);
    const uint16_t* odd = key + 1 < count ? base + values.offset(key + 1) : nullptr;
    uint32_t* pair_row = reinterpret_cast<uint32_t*>(dst + (key / kKeyTile) * kKeyTile * dim_v_pad +
                                                     (key % kKeyTile / 2) * dim_v_pad * 2);
    if (odd != nullptr) {
      for (int64_t d = 0; d < values.dim; ++d) {
        pair_row[d] = static_cast<uint32_t>(even[d]) | static_cast<uint32_t>(odd[d]) << 16;
      }
    } else {
      for (int64_t d = 0; d < values.dim; ++d) pair_row[d] = even[d];
    }
  }
}

void pack_transposed_tiles_bf16(const HeadRows& rows, int64_t count, int64_t dim_pad,
                                uint16_t* dst) {
  const int64_t tiles = (count + kKeyTile - 1) / kKeyTile;
  std::fill(dst, dst + tiles * dim_pad * kKeyTile, uint16_t{0});
  const uint16_t* base = static_cast<const uint16_t*>(rows.ref->data);
  for (int64_t row = 0; row < count; ++row) {
    const uint16_t* source = base + rows.offset(row);
    uint16_t* tile = dst + (row / kKeyTile) * dim_pad * kKeyTile + row % kKeyTile;
    for (int64_t d = 0; d < rows.dim; ++d) tile[d * kKeyTile] = source[d];
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
