// The fragment order of the backward's dQ workspace: where each dQ value of a query tile lives,
// as the main kernel's vector atomics add it and the post-pass reads it back. Host and device
// (tests/cpu/dq_tile_layout_test.cpp checks it against the mma fragment's layout).
#pragma once

#include "common/host_device.h"

namespace flashattn::cuda_sm80 {

// Where dQ element (row, col) lives in the workspace: fragment order. Each tile of tile_rows
// query rows (counted from the sequence's first row; tile_rows * width values) holds the main
// kernel's dQ accumulators warp by warp, each warp's per m16 x n8 block in register order, 32
// lanes x 4 values a block; warp w covers rows (w % warps_along_rows) * warp_rows and columns
// (w / warps_along_rows) * warp_cols onward. A warp-wide vector atomic then covers 512
// contiguous bytes (4 cache lines) instead of 8 rows.
struct DqTileLayout {
  int tile_rows;
  int warp_rows;
  int warp_cols;
  int warps_along_rows;

  // Offset, in floats from the tile's start, of dQ value (tile_row, col): warp region, then
  // m16 x n8 block of the region (row-major), then lane (g = row % 8, t = (col % 8) / 2), then
  // value (2 (row / 8 % 2) + col % 2).
  FLASHATTN_HD int value_offset(int tile_row, int col) const {
    const int warp_row = tile_row % warp_rows;
    const int warp = (col / warp_cols) * warps_along_rows + tile_row / warp_rows;
    const int block = (warp_row / 16) * (warp_cols / 8) + (col % warp_cols) / 8;
    return warp * warp_rows * warp_cols + (block * 32 + (warp_row % 8) * 4 + (col % 8) / 2) * 4 +
           2 * ((warp_row / 8) % 2) + col % 2;
  }

  // Lane slot `slot` (four floats: a lane's values of one m16 x n8 block) of the rows [row0,
  // row0 + rows) of a tile (row0 and rows multiples of warp_rows), counted over those rows'
  // warp regions in order: its float4 index from the tile's start in *index, and the tile row
  // and column of its first value in *tile_row and *col. Its values are (tile_row, col),
  // (tile_row, col + 1), (tile_row + 8, col), (tile_row + 8, col + 1).
  FLASHATTN_HD void slot_position(int row0, int rows, int slot, int* index, int* tile_row,
                                  int* col) const {
    const int row_warps = rows / warp_rows;
    const int region_slots = warp_rows * warp_cols / 4;
    const int region = slot / region_slots;
    const int in_region = slot % region_slots;
    const int warp =
        (region / row_warps) * warps_along_rows + row0 / warp_rows + region % row_warps;
    const int block = in_region / 32;
    const int lane = in_region % 32;
    *index = warp * region_slots + in_region;
    *tile_row = (warp % warps_along_rows) * warp_rows + (block / (warp_cols / 8)) * 16 + lane / 4;
    *col = (warp / warps_along_rows) * warp_cols + (block % (warp_cols / 8)) * 8 + 2 * (lane % 4);
  }
};

}  // namespace flashattn::cuda_sm80
