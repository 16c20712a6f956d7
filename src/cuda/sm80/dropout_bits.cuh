#pragma once
// Dropout's keep / drop decisions for one row of a lane's score fragments, as a bit mask, from
// the Philox scheme of common/philox.h (the CPU backend's: the same elements drop).

#include <cstdint>
#include <type_traits>

#include "common/philox.h"

namespace flashattn::cuda_sm80 {

// One butterfly stage of quad_transpose, over lane bit kBit (1 or 2): in each slot pair
// (i, i + kBit), i without kBit, a lane with that bit set takes slot i from its partner
// (lane ^ kBit) and sends slot i + kBit, a lane without it the reverse, so each sends exactly
// the slot it replaces. Two shuffles and four selects.
template <uint32_t kBit>
__device__ __forceinline__ void quad_exchange(uint32_t (&words)[4], uint32_t lane_in_quad) {
  const bool high = lane_in_quad & kBit;
#pragma unroll
  for (uint32_t i = 0; i < 4; ++i) {
    if (i & kBit) continue;
    const uint32_t received =
        __shfl_xor_sync(~0u, high ? words[i] : words[i + kBit], static_cast<int>(kBit));
    words[i] = high ? received : words[i];
    words[i + kBit] = high ? words[i + kBit] : received;
  }
}

// Transposes a 4 x 4 matrix of words held by the four lanes of a quad (lanes 4 g .. 4 g + 3):
// on entry lane t holds row t (words[i] = M[t][i]), on return column t (words[i] = M[i][t]).
// Two butterfly stages (quad_exchange), over lane bit 0 and then bit 1. Invariant after the
// stages over the bit set S: slot i of lane L holds M[(L & ~S) | (i & S)][(i & ~S) | (L & S)],
// so after both stages M[i][L]. Every lane of the warp must call it.
__device__ __forceinline__ void quad_transpose(uint32_t (&words)[4], uint32_t lane_in_quad) {
  quad_exchange<1>(words, lane_in_quad);
  quad_exchange<2>(words, lane_in_quad);
}

// The keep bits of one Philox word of a lane: its two 16-bit values, elements e = 0, 1.
__device__ __forceinline__ uint32_t kept_pair(uint32_t word, uint32_t keep_threshold) {
  return static_cast<uint32_t>(dropout_half(word, 0) < keep_threshold) |
         static_cast<uint32_t>(dropout_half(word, 1) < keep_threshold) << 1;
}

// Bit 2 j + e: whether element e of the lane's n8 tile j (key key0 + 8 j + e) survives, for
// kTiles tiles of row `row`. key0 is the lane's first key, base + 2 t with base a multiple of 8
// and t = lane % 4 (the mma fragment's column pair). One Philox call covers a whole n8 tile of
// the row (its eight keys), of which lane t needs word t (both halves). So in each group of
// four tiles lane t draws only tile 4 q + t and the quad transposes the words (quad_transpose):
// afterwards lane t holds word t of each of the four tiles, in tile order. A lane thus makes
// kTiles / 4 calls a row (about 60 integer instructions each) instead of one a tile. Tiles past
// the last whole group (kTiles % 4 of them, none in the kernels' usual configurations) are
// drawn by every lane itself. Every lane of the warp must call it (shuffles).
template <int kTiles>
__device__ __forceinline__ uint32_t dropout_kept_bits(uint64_t seed, uint64_t offset,
                                                      uint32_t keep_threshold, uint32_t batch_head,
                                                      uint32_t row, uint32_t key0) {
  static_assert(kTiles >= 1 && 2 * kTiles <= 32, "one bit per element");
  constexpr int kGroups = kTiles / 4;
  const uint32_t t = (key0 >> 1) & 3u;
  const uint32_t first_group = key0 >> 3;  // Philox column group of tile 0
  uint32_t bits = 0;
#pragma unroll
  for (int q = 0; q < kGroups; ++q) {
    const Philox4 drawn = dropout_random_words(seed, offset, batch_head, row,
                                               first_group + 4 * static_cast<uint32_t>(q) + t);
    uint32_t words[4] = {drawn.x, drawn.y, drawn.z, drawn.w};
    quad_transpose(words, t);  // words[i]: word t of tile 4 q + i
#pragma unroll
    for (int i = 0; i < 4; ++i) bits |= kept_pair(words[i], keep_threshold) << (2 * (4 * q + i));
  }
#pragma unroll
  for (int j = 4 * kGroups; j < kTiles; ++j) {
    const Philox4 drawn =
        dropout_random_words(seed, offset, batch_head, row, first_group + static_cast<uint32_t>(j));
    bits |= kept_pair(philox_word(drawn, static_cast<int>(t)), keep_threshold) << (2 * j);
  }
  return bits;
}

// Whether element e of the lane's n8 tile j survives (1) or not (0), from dropout_kept_bits'
// mask.
__device__ __forceinline__ uint32_t element_kept(uint32_t kept_bits, int j, int e) {
  return (kept_bits >> (2 * j + e)) & 1u;
}

// Row half hh (the fragment's row g, or g + 8) of m16 tile m of an accumulator tile
// (cuda::AccTile; taken by its v[m][n][4] so that this header stays free of the device-only
// ones, for the host test) through the row's keep mask: dropped elements become 0, kept ones
// are multiplied by keep_scale.
template <typename Tile>
__device__ __forceinline__ void apply_keep_mask(Tile& tile, int m, int hh, uint32_t kept_bits,
                                                float keep_scale = 1.0f) {
  constexpr int kN = static_cast<int>(std::extent_v<decltype(tile.v), 1>);
#pragma unroll
  for (int n = 0; n < kN; ++n)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float& value = tile.v[m][n][2 * hh + e];
      value = element_kept(kept_bits, n, e) ? value * keep_scale : 0.0f;
    }
}

}  // namespace flashattn::cuda_sm80
