// Shared-memory tiles of 16-bit elements with an XOR swizzle, and their copies to and from
// strided global rows (cp.async when 16-byte aligned, a predicated scalar path otherwise).
#pragma once

#include <cstdint>

#include "cuda/common/ptx.cuh"

namespace flashattn::cuda {

// A kRows x kWidth tile stored as 64-column panels of 128-byte rows. The 16-byte chunk c of
// row r sits at chunk c ^ (r % 8) of its panel row: the 8 row addresses of one ldmatrix
// phase (8 consecutive rows, same logical chunk) then land on 8 different 16-byte bank
// groups, and so do the 8 rows a quad of lanes stores in the epilogue. Widths that are not a
// multiple of 64 (32, 96) leave part of their last panel unused.
template <int kRows, int kWidth>
struct SmemTile {
  static_assert(kWidth % 16 == 0, "tile width must be a multiple of 16 (one mma k-step)");
  static constexpr int kChunksPerRow = kWidth / 8;
  static constexpr int kPanels = (kWidth + 63) / 64;
  static constexpr int kPanelRows = kRows;  // a panel: kPanelRows rows of 128 bytes
  static constexpr int kBytes = kPanels * kRows * 128;

  __device__ __forceinline__ static uint32_t offset(int row, int chunk) {
    return static_cast<uint32_t>(((chunk >> 3) * kRows + row) * 128 +
                                 (((chunk & 7) ^ (row & 7)) << 4));
  }

  // ldmatrix addressing: lane reads row row0 + lane_row, chunk chunk0 + lane_chunk with
  // compile-time row0 % 8 == 0 and chunk0 % 2 == 0; lane_chunk may carry a per-warp offset of
  // any size (a warp's share of the columns). The swizzle and the panel then depend on
  // chunk0 % 8 and chunk0 / 8 alone, so four per-lane bases serve every (row0, chunk0) through
  // an immediate offset instead of one register per address.
  struct LaneAddresses {
    uint32_t base[4];

    __device__ __forceinline__ uint32_t at(int row0, int chunk0) const {
      return base[(chunk0 & 7) / 2] + static_cast<uint32_t>(((chunk0 >> 3) * kRows + row0) * 128);
    }

    // The same lanes in a tile `bytes` further on (another pipeline stage of the same shape).
    __device__ __forceinline__ LaneAddresses shifted(uint32_t bytes) const {
      LaneAddresses moved;
#pragma unroll
      for (int k = 0; k < 4; ++k) moved.base[k] = base[k] + bytes;
      return moved;
    }
  };

  __device__ __forceinline__ static LaneAddresses lane_addresses(uint32_t tile, int lane_row,
                                                                 int lane_chunk) {
    LaneAddresses addresses;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int chunk = 2 * k + lane_chunk;  // may reach into a later panel
      addresses.base[k] = tile + static_cast<uint32_t>(((chunk >> 3) * kRows + lane_row) * 128 +
                                                       (((chunk & 7) ^ (lane_row & 7)) << 4));
    }
    return addresses;
  }
};

// Rows of one operand in global memory: element (row, col) at base[row * row_stride + col].
// Only rows < rows and columns < cols exist; everything else reads as zero. `vectorized`
// says that base and row_stride allow 16-byte accesses (checked on the host).
template <typename T>
struct GlobalRows {
  T* base;
  int64_t row_stride;
  int rows;
  int cols;
  bool vectorized;
};

// How kThreads threads cover a tile: thread -> (first row, chunk). Each pass covers
// kRowsPerPass rows; a row is spread over a power of two of threads (kLanesPerRow >= chunks
// per row, the extra ones idle) so that a thread keeps its column on every pass and its
// addresses advance by a fixed step: nothing per pass has to be kept in registers across the
// kernel's main loop.
template <int kRows, int kWidth, int kThreads>
struct TileCopyPlan {
  static constexpr int kChunksPerRow = kWidth / 8;
  static constexpr int kLanesPerRow = kChunksPerRow <= 4    ? 4
                                      : kChunksPerRow <= 8  ? 8
                                      : kChunksPerRow <= 16 ? 16
                                                            : 32;
  static constexpr int kRowsPerPass = kThreads / kLanesPerRow;
  static constexpr int kPasses = kRows / kRowsPerPass;
  static_assert(kThreads % kLanesPerRow == 0 && kRows % kRowsPerPass == 0, "even passes");
  // Passes of a multiple of 8 rows keep each thread's swizzle phase: a fixed smem step. Passes
  // of 4 rows (a 256-wide tile copied by 128 threads) alternate between two phases: two bases,
  // each with a fixed step, instead of the swizzle worked out again for every pass.
  static constexpr bool kFixedStep = kRowsPerPass % 8 == 0;
  static constexpr bool kTwoPhases = kRowsPerPass == 4;

  // The shared-memory addresses of this thread's chunk on its first two passes (the second
  // only with kTwoPhases), for pass_address.
  template <typename Tile>
  __device__ __forceinline__ static void first_pass_addresses(uint32_t tile, uint32_t* dst0,
                                                              uint32_t* dst1) {
    *dst0 = tile + Tile::offset(row(), chunk());
    *dst1 = kTwoPhases ? tile + Tile::offset(row() + kRowsPerPass, chunk()) : 0;
  }

  // The shared-memory address of this thread's chunk on pass `pass`, from the address of its
  // first two passes (dst1 is used only with kTwoPhases).
  template <typename Tile>
  __device__ __forceinline__ static uint32_t pass_address(uint32_t tile, uint32_t dst0,
                                                          uint32_t dst1, int pass) {
    if constexpr (kFixedStep) {
      return dst0 + pass * kRowsPerPass * 128;
    } else if constexpr (kTwoPhases) {
      return (pass % 2 == 0 ? dst0 : dst1) + (pass / 2) * 2 * kRowsPerPass * 128;
    } else {
      return tile + Tile::offset(row() + pass * kRowsPerPass, chunk());
    }
  }

  __device__ __forceinline__ static int row() {
    return static_cast<int>(threadIdx.x) / kLanesPerRow;
  }
  __device__ __forceinline__ static int chunk() {
    return static_cast<int>(threadIdx.x) % kLanesPerRow;
  }
};

// Global -> shared for a whole tile by kThreads threads. The vectorized path is asynchronous
// (commit and wait with cp_async_*); the scalar path has completed when it returns.
template <int kRows, int kWidth, int kThreads, typename T>
__device__ __forceinline__ void load_tile(uint32_t tile, const GlobalRows<const T>& src) {
  using Tile = SmemTile<kRows, kWidth>;
  using Plan = TileCopyPlan<kRows, kWidth, kThreads>;
  const int chunk = Plan::chunk();
  if (chunk >= Tile::kChunksPerRow) return;
  const int row0 = Plan::row();
  const int col = chunk * 8;
  uint32_t dst0, dst1;
  Plan::template first_pass_addresses<Tile>(tile, &dst0, &dst1);
  const T* from = src.base + row0 * src.row_stride + col;
  const int64_t step = Plan::kRowsPerPass * src.row_stride;
  if (src.vectorized && src.rows >= kRows && src.cols == kWidth) {
    // The whole tile exists (every block but a sequence's last, at a tile-width head dim):
    // plain 16-byte copies, without the per-copy bounds and zero-fill arithmetic, which in
    // the kernels' main loops cost more instructions than the copies themselves.
#pragma unroll
    for (int pass = 0; pass < Plan::kPasses; ++pass, from += step) {
      cp_async_16(Plan::template pass_address<Tile>(tile, dst0, dst1, pass), from);
    }
    return;
  }
  const int valid_cols = col < src.cols ? min(src.cols - col, 8) : 0;
#pragma unroll
  for (int pass = 0; pass < Plan::kPasses; ++pass, from += step) {
    const int row = row0 + pass * Plan::kRowsPerPass;
    const int valid = row < src.rows ? valid_cols : 0;
    const uint32_t dst = Plan::template pass_address<Tile>(tile, dst0, dst1, pass);
    if (src.vectorized) {
      cp_async_16(dst, valid > 0 ? from : src.base, valid * 2);
    } else {
      const uint16_t* bits = reinterpret_cast<const uint16_t*>(from);
      uint16_t values[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) values[e] = e < valid ? bits[e] : 0;
      asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(dst),
                   "r"(values[0] | (uint32_t{values[1]} << 16)),
                   "r"(values[2] | (uint32_t{values[3]} << 16)),
                   "r"(values[4] | (uint32_t{values[5]} << 16)),
                   "r"(values[6] | (uint32_t{values[7]} << 16)));
    }
  }
}

// Shared -> global for a whole tile; rows and columns outside dst are not written.
// kSteppedWholeTile adds a path for a tile that exists whole, with stepped addresses: fewer
// instructions, but in some 255-register kernels the extra branch costs spills (bench/NOTES.md,
// sessions 10-11), so each caller chooses.
template <int kRows, int kWidth, int kThreads, bool kSteppedWholeTile = false, typename T>
__device__ __forceinline__ void store_tile(uint32_t tile, const GlobalRows<T>& dst) {
  using Tile = SmemTile<kRows, kWidth>;
  using Plan = TileCopyPlan<kRows, kWidth, kThreads>;
  const int chunk = Plan::chunk();
  const int col = chunk * 8;
  if (chunk >= Tile::kChunksPerRow || col >= dst.cols) return;
  const int row0 = Plan::row();
  if constexpr (kSteppedWholeTile) {
    if (dst.vectorized && dst.rows >= kRows && dst.cols == kWidth) {
      // The whole tile exists: plain 16-byte stores with addresses stepped by a fixed amount, as
      // load_tile copies, instead of the bounds, the swizzle and a 64-bit row product worked out
      // again on every pass.
      uint32_t src0, src1;
      Plan::template first_pass_addresses<Tile>(tile, &src0, &src1);
      T* to = dst.base + row0 * dst.row_stride + col;
      const int64_t step = Plan::kRowsPerPass * dst.row_stride;
#pragma unroll
      for (int pass = 0; pass < Plan::kPasses; ++pass, to += step) {
        uint32_t words[4];
        asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(words[0]), "=r"(words[1]), "=r"(words[2]), "=r"(words[3])
                     : "r"(Plan::template pass_address<Tile>(tile, src0, src1, pass)));
        *reinterpret_cast<uint4*>(to) = make_uint4(words[0], words[1], words[2], words[3]);
      }
      return;
    }
  }
  const bool full = dst.vectorized && col + 8 <= dst.cols;
#pragma unroll
  for (int pass = 0; pass < Plan::kPasses; ++pass) {
    const int row = row0 + pass * Plan::kRowsPerPass;
    if (row >= dst.rows) break;
    uint32_t words[4];
    asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(words[0]), "=r"(words[1]), "=r"(words[2]), "=r"(words[3])
                 : "r"(tile + Tile::offset(row, chunk)));
    T* to = dst.base + row * dst.row_stride + col;
    if (full) {
      *reinterpret_cast<uint4*>(to) = make_uint4(words[0], words[1], words[2], words[3]);
    } else {
      uint16_t* to_bits = reinterpret_cast<uint16_t*>(to);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        if (col + e < dst.cols) to_bits[e] = static_cast<uint16_t>(words[e / 2] >> (16 * (e % 2)));
      }
    }
  }
}

}  // namespace flashattn::cuda
