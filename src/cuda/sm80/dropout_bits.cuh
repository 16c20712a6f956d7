#pragma once
// Dropout's keep / drop decisions for one row of a lane's score fragments, as a bit mask, from
// the Philox scheme of common/philox.h (the CPU backend's: the same elements drop).

#include <cstdint>

#include "common/philox.h"

namespace flashattn::cuda_sm80 {

// Transposes a 4 x 4 matrix of words held by the four lanes of a quad (lanes 4 g .. 4 g + 3):
// on entry lane t holds row t (words[i] = M[t][i]), on return column t (words[i] = M[i][t]).
// Two butterfly stages, over lane bit 0 (xor 1) and then bit 1 (xor 2); in the stage over bit
// b a lane keeps the words whose index agrees with its lane number in bit b and takes the other
// two from its partner (lane ^ (1 << b), slot index ^ (1 << b)), which sends exactly the two it
// replaces itself. Invariant after the stages over the bit set S: slot i of lane L holds
// M[(L & ~S) | (i & S)][(i & ~S) | (L & S)], so after both stages M[i][L]. Four shuffles and
// eight selects; every lane of the warp must call it.
__device__ __forceinline__ void quad_transpose(uint32_t (&words)[4], uint32_t lane_in_quad) {
  const bool odd = lane_in_quad & 1u;  // stage 1: slots 0, 2 come from the partner, else 1, 3
  const uint32_t from_partner0 = __shfl_xor_sync(~0u, odd ? words[0] : words[1], 1);
  const uint32_t from_partner1 = __shfl_xor_sync(~0u, odd ? words[2] : words[3], 1);
  words[0] = odd ? from_partner0 : words[0];
  words[1] = odd ? words[1] : from_partner0;
  words[2] = odd ? from_partner1 : words[2];
  words[3] = odd ? words[3] : from_partner1;
  const bool upper = lane_in_quad & 2u;  // stage 2: slots 0, 1 come from the partner, else 2, 3
  const uint32_t from_partner2 = __shfl_xor_sync(~0u, upper ? words[0] : words[2], 2);
  const uint32_t from_partner3 = __shfl_xor_sync(~0u, upper ? words[1] : words[3], 2);
  words[0] = upper ? from_partner2 : words[0];
  words[2] = upper ? words[2] : from_partner2;
  words[1] = upper ? from_partner3 : words[1];
  words[3] = upper ? words[3] : from_partner3;
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

}  // namespace flashattn::cuda_sm80
