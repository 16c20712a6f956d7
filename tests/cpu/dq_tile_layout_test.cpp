// The backward's dQ workspace order (src/cuda/sm80/dq_tile_layout.h) on the host: every value
// of a tile has one place; the place follows the mma m16n8 accumulator fragment (lane 4 g + t
// holds rows g and g + 8, columns 2 t and 2 t + 1, as values 0-1 and 2-3), which is how the
// main kernel's vector atomics write it; and the post-pass's lane slots (the staged post-pass,
// tiles of width 128 and up) name the same places as value_offset (the unstaged post-pass).
#include "cuda/sm80/dq_tile_layout.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace flashattn::cuda_sm80 {
namespace {

constexpr int kWarps = 8;           // the backward kernels' warps per block
constexpr int kPassBlockRows = 64;  // kBackwardBlockM: the post-pass's rows per block

struct Layout {
  DqTileLayout tile;
  int width;
  std::string name() const {
    return "tile_rows " + std::to_string(tile.tile_rows) + ", warps along rows " +
           std::to_string(tile.warps_along_rows) + ", width " + std::to_string(width);
  }
};

// Every layout a kernel configuration can have (BackwardConfig: 64 or 128 rows a step, 2 or 4
// warps along the rows, tile widths 32-256), as far as the warp regions are whole m16 x n8
// blocks.
std::vector<Layout> all_layouts() {
  std::vector<Layout> layouts;
  for (int tile_rows : {64, 128})
    for (int along_rows : {2, 4})
      for (int width : {32, 64, 96, 128, 192, 256}) {
        const int warp_rows = tile_rows / along_rows;
        const int warp_cols = width / (kWarps / along_rows);
        if (warp_rows % 16 != 0 || warp_cols % 8 != 0) continue;
        layouts.push_back({{tile_rows, warp_rows, warp_cols, along_rows}, width});
      }
  return layouts;
}

TEST(DqTileLayout, EveryValueHasOnePlaceInTheFragmentOrder) {
  for (const Layout& layout : all_layouts()) {
    const DqTileLayout& tile = layout.tile;
    std::vector<int> owner(static_cast<size_t>(tile.tile_rows) * layout.width, -1);
    for (int row = 0; row < tile.tile_rows; ++row)
      for (int col = 0; col < layout.width; ++col) {
        const int offset = tile.value_offset(row, col);
        ASSERT_GE(offset, 0) << layout.name();
        ASSERT_LT(offset, static_cast<int>(owner.size())) << layout.name();
        ASSERT_EQ(owner[offset], -1)
            << layout.name() << ": row " << row << ", col " << col << " shares offset " << offset;
        owner[offset] = row * layout.width + col;
        // The region of the warp that holds the value, the lane and the value within it.
        const int region = offset / (tile.warp_rows * tile.warp_cols);
        EXPECT_EQ(region, (col / tile.warp_cols) * tile.warps_along_rows + row / tile.warp_rows)
            << layout.name();
        const int lane = offset / 4 % 32;
        const int value = offset % 4;
        EXPECT_EQ(lane, (row % 8) * 4 + (col % 8) / 2) << layout.name();
        EXPECT_EQ(value, 2 * (row % 16 / 8) + col % 2) << layout.name();
      }
  }
}

TEST(DqTileLayout, PassBlockSlotsCoverTheirRowsAtTheirOffsets) {
  for (const Layout& layout : all_layouts()) {
    const DqTileLayout& tile = layout.tile;
    for (int row0 = 0; row0 < tile.tile_rows; row0 += kPassBlockRows) {
      if (kPassBlockRows % tile.warp_rows != 0) continue;
      std::vector<int> seen(static_cast<size_t>(kPassBlockRows) * layout.width, 0);
      const int slots = kPassBlockRows * layout.width / 4;
      for (int slot = 0; slot < slots; ++slot) {
        int index = -1, tile_row = -1, col = -1;
        tile.slot_position(row0, kPassBlockRows, slot, &index, &tile_row, &col);
        for (int k = 0; k < 4; ++k) {
          const int row = tile_row + 8 * (k / 2);
          const int column = col + k % 2;
          ASSERT_GE(row, row0) << layout.name();
          ASSERT_LT(row, row0 + kPassBlockRows) << layout.name();
          ASSERT_LT(column, layout.width) << layout.name();
          EXPECT_EQ(tile.value_offset(row, column), 4 * index + k)
              << layout.name() << ": slot " << slot << ", value " << k;
          ++seen[(row - row0) * layout.width + column];
        }
      }
      for (int count : seen) ASSERT_EQ(count, 1) << layout.name() << ", rows from " << row0;
    }
  }
}

}  // namespace
}  // namespace flashattn::cuda_sm80
