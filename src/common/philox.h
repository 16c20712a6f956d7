// Philox4x32-10 and the dropout counter scheme shared bit for bit by every backend.
//
// The contract (DESIGN.md): dropout is keyed by (seed, offset) and counted by
// (batch, head, row, col), so the CPU and GPU backends drop exactly the same elements.
//   key     = (lo32(seed), hi32(seed) ^ hi32(offset))
//   counter = (col / 8, row, batch * heads_q + head, lo32(offset))
// One Philox call yields four 32-bit words, split into eight 16-bit values for the eight
// consecutive columns 8*(col/8) .. 8*(col/8)+7: element (…, col) uses the half col % 2 (0: low
// 16 bits) of word (col % 8) / 2 (words x, y, z, w). The 64-bit offset goes into the last
// counter word (low half) and is folded into the key (high half), so two calls whose offsets
// differ never share a random stream.
// An element is kept iff its 16-bit value < dropout_keep_threshold(p) = floor((1 - p) 2^16):
// the keep probability is within 2^-16 of 1 - p (FlashAttention-2 uses 8-bit values, 2^-8),
// and one call serves eight elements, which on the GPU is one mma n8 tile of a row (a quad's
// lane t takes word t). Earlier versions used one 32-bit word a column (counter col / 4), so
// the same seed drops other elements than before.
#pragma once

#include <cstdint>

#include "common/host_device.h"

namespace flashattn {

struct Philox4 {
  uint32_t x, y, z, w;
};

// lo32(a * b), and hi32(a * b) in *hi. On the device one mul.wide.u32 in inline PTX, as
// FlashAttention-2 does: written in C++, NVVM carried the rounds' xors and products in 64-bit
// registers (the 32-bit key zero-extended), and ptxas then spent an add on each product's known
// zero upper half (sm90 SASS: ~2 extra instructions a round).
FLASHATTN_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
#if defined(__CUDA_ARCH__)
  uint32_t lo;
  asm("{\n\t.reg .u64 product;\n\tmul.wide.u32 product, %2, %3;\n\tmov.b64 {%0, %1}, product;\n\t}"
      : "=r"(lo), "=r"(*hi)
      : "r"(a), "r"(b));
  return lo;
#else
  const uint64_t product = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
#endif
}

// Philox4x32 with 10 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
FLASHATTN_HD Philox4 philox4x32_10(Philox4 counter, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = philox_mulhilo(kMul0, counter.x, &hi0);
    const uint32_t lo1 = philox_mulhilo(kMul1, counter.z, &hi1);
    counter = Philox4{hi1 ^ counter.y ^ key0, lo1, hi0 ^ counter.w ^ key1, lo0};
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return counter;
}

// The four random words for columns 8*col_group .. 8*col_group+7 of (batch_head, row)
// (col_group = col / 8). batch_head = batch * heads_q + head.
FLASHATTN_HD Philox4 dropout_random_words(uint64_t seed, uint64_t offset, uint32_t batch_head,
                                          uint32_t row, uint32_t col_group) {
  const uint32_t key0 = static_cast<uint32_t>(seed);
  const uint32_t key1 = static_cast<uint32_t>(seed >> 32) ^ static_cast<uint32_t>(offset >> 32);
  return philox4x32_10(Philox4{col_group, row, batch_head, static_cast<uint32_t>(offset)}, key0,
                       key1);
}

// The key of a call: the pair {seed, offset} when given (memory the caller fills, e.g. on the
// device from a captured RNG kernel, read where the kernel runs), else the scalar values.
struct DropoutKey {
  uint64_t seed;
  uint64_t offset;
};
FLASHATTN_HD DropoutKey dropout_key(const int64_t* pair, uint64_t seed, uint64_t offset) {
  if (pair != nullptr) return {static_cast<uint64_t>(pair[0]), static_cast<uint64_t>(pair[1])};
  return {seed, offset};
}

FLASHATTN_HD uint32_t philox_word(const Philox4& words, int index) {
  return index == 0 ? words.x : index == 1 ? words.y : index == 2 ? words.z : words.w;
}

// The 16-bit random value in half `half` (0: the low 16 bits) of a Philox word; the GPU's lanes
// hold single words (one lane, one word of a group) and take their two values with it.
FLASHATTN_HD uint32_t dropout_half(uint32_t word, uint32_t half) {
  return (word >> (16u * half)) & 0xFFFFu;
}

// The 16-bit random value of column col from the words of its group (col / 8): the half
// col % 2 of word (col % 8) / 2.
FLASHATTN_HD uint32_t dropout_value(const Philox4& words, uint32_t col) {
  return dropout_half(philox_word(words, static_cast<int>((col & 7u) >> 1)), col & 1u);
}

// Keep threshold on the 16-bit value: kept iff value < threshold, threshold in [0, 65536].
// Computed in double so that every backend gets the same integer; p == 0 keeps everything.
FLASHATTN_HD uint32_t dropout_keep_threshold(float dropout_p) {
  const double keep = 1.0 - static_cast<double>(dropout_p);
  const double scaled = keep * 65536.0;
  if (scaled >= 65536.0) return 65536u;
  return scaled > 0.0 ? static_cast<uint32_t>(scaled) : 0u;
}

FLASHATTN_HD bool dropout_keeps(uint64_t seed, uint64_t offset, uint32_t batch_head, uint32_t row,
                                uint32_t col, uint32_t keep_threshold) {
  const Philox4 words = dropout_random_words(seed, offset, batch_head, row, col >> 3);
  return dropout_value(words, col) < keep_threshold;
}

}  // namespace flashattn
