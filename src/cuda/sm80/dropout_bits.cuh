#pragma once
// Dropout's keep / drop decisions for one row of a lane's score fragments, as a bit mask, from
// the Philox scheme of common/philox.h (the CPU backend's: the same elements drop).

#include <cstdint>

#include "common/philox.h"

namespace flashattn::cuda_sm80 {

// Bit 2 j + e: whether element e of the lane's n8 tile j (key key0 + 8 j + e) survives, for
// kTiles tiles of row `row`. key0 is the lane's first key, base + 2 t with base a multiple of 8
// (the mma fragment's column pair), so lanes t and t ^ 1 need the two halves of the same four
// Philox words (keys (key0 + 8 j) & ~3 ... + 3): each lane of the pair works out the words of
// every other tile and hands the half it does not need to the other, which halves the Philox
// calls (about 60 integer instructions each, per two elements before). Every lane of the warp
// must call it (a shuffle).
template <int kTiles>
__device__ __forceinline__ uint32_t dropout_kept_bits(uint64_t seed, uint64_t offset,
                                                      uint64_t keep_threshold, uint32_t batch_head,
                                                      uint32_t row, uint32_t key0) {
  static_assert(kTiles % 2 == 0 && 2 * kTiles <= 32, "tile pairs, one bit per element");
  const uint32_t odd = (key0 >> 1) & 1u;  // t odd: the upper half (words z, w) of each group
  uint32_t bits = 0;
#pragma unroll
  for (int j = 0; j < kTiles; j += 2) {
    const uint32_t own_tile =
        static_cast<uint32_t>(j) + odd;  // the tile whose words this lane draws
    const Philox4 words =
        dropout_random_words(seed, offset, batch_head, row, (key0 + 8 * own_tile) >> 2);
    // This lane's half of its own tile's words; the other half goes to the partner, whose own
    // tile is the other one of the pair.
    const uint32_t mine0 = odd ? words.z : words.x;
    const uint32_t mine1 = odd ? words.w : words.y;
    const uint32_t other0 = __shfl_xor_sync(~0u, odd ? words.x : words.z, 1);
    const uint32_t other1 = __shfl_xor_sync(~0u, odd ? words.y : words.w, 1);
    const uint32_t own_bits = static_cast<uint32_t>(mine0 < keep_threshold) |
                              static_cast<uint32_t>(mine1 < keep_threshold) << 1;
    const uint32_t other_bits = static_cast<uint32_t>(other0 < keep_threshold) |
                                static_cast<uint32_t>(other1 < keep_threshold) << 1;
    const uint32_t other_tile = static_cast<uint32_t>(j) + (1u - odd);
    bits |= own_bits << (2 * own_tile) | other_bits << (2 * other_tile);
  }
  return bits;
}

}  // namespace flashattn::cuda_sm80
