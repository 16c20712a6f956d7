// Dropout: Philox4x32-10 known answers, keep rates, reproducibility per (seed, offset), and the
// mask the CPU reference returns equal to src/common/philox.h element by element.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/philox.h"
#include "common/score_mods.h"
#include "cpu/reference/sequences.h"
#include "flashattn/flashattn.h"
#include "support/attention_case.h"
#include "support/host_problem.h"

namespace flashattn {
namespace {

// Known-answer vectors published with Random123 (kat_vectors, "philox4x32 10" lines):
// counter (4 words), key (2 words) -> output (4 words).
struct PhiloxKnownAnswer {
  Philox4 counter;
  uint32_t key0, key1;
  Philox4 expected;
};

TEST(Philox4x32_10, MatchesRandom123KnownAnswers) {
  const PhiloxKnownAnswer answers[] = {
      {{0x00000000, 0x00000000, 0x00000000, 0x00000000},
       0x00000000,
       0x00000000,
       {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       0xffffffff,
       0xffffffff,
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},  // digits of pi
       0xa4093822,
       0x299f31d0,
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const PhiloxKnownAnswer& answer : answers) {
    const Philox4 result = philox4x32_10(answer.counter, answer.key0, answer.key1);
    EXPECT_EQ(result.x, answer.expected.x);
    EXPECT_EQ(result.y, answer.expected.y);
    EXPECT_EQ(result.z, answer.expected.z);
    EXPECT_EQ(result.w, answer.expected.w);
  }
}

// A [batch_heads, rows, cols] keep mask straight from philox.h.
std::vector<uint8_t> keep_mask(uint64_t seed, uint64_t offset, float p, uint32_t batch_heads,
                               uint32_t rows, uint32_t cols) {
  const uint32_t threshold = dropout_keep_threshold(p);
  std::vector<uint8_t> mask;
  mask.reserve(static_cast<size_t>(batch_heads) * rows * cols);
  for (uint32_t bh = 0; bh < batch_heads; ++bh) {
    for (uint32_t row = 0; row < rows; ++row) {
      for (uint32_t col = 0; col < cols; ++col) {
        mask.push_back(dropout_keeps(seed, offset, bh, row, col, threshold) ? 1 : 0);
      }
    }
  }
  return mask;
}

int64_t count_kept(const std::vector<uint8_t>& mask) {
  int64_t kept = 0;
  for (uint8_t value : mask) kept += value;
  return kept;
}

int64_t count_differences(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int64_t differences = 0;
  for (size_t i = 0; i < a.size(); ++i) differences += a[i] != b[i] ? 1 : 0;
  return differences;
}

TEST(Dropout, ZeroProbabilityKeepsEverything) {
  EXPECT_EQ(dropout_keep_threshold(0.0f), 65536u);
  const std::vector<uint8_t> mask = keep_mask(1, 2, 0.0f, 2, 16, 64);
  EXPECT_EQ(count_kept(mask), static_cast<int64_t>(mask.size()));
}

// The threshold on the 16-bit values is floor((1 - p) 2^16), worked out in double from the
// float p: the keep probability threshold / 2^16 is within 2^-16 of 1 - p.
TEST(Dropout, KeepThresholdIsExact) {
  struct Row {
    float p;
    uint32_t threshold;
  };
  const Row rows[] = {
      {0.0f, 65536u},     {0x1p-17f, 65535u},  // 65535.5: the value 65535 drops
      {0x1p-16f, 65535u},                      // exactly 65535
      {0.1f, 58982u},                          // (1 - 0.1f) 2^16 = 58982.4000...
      {0.5f, 32768u},     {0.75f, 16384u},    {1.0f - 0x1p-16f, 1u},  // only the value 0 is kept
      {1.0f, 0u},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(dropout_keep_threshold(row.p), row.threshold) << "p " << row.p;
    const double keep = static_cast<double>(row.threshold) / 65536.0;
    EXPECT_LE(std::abs(keep - (1.0 - static_cast<double>(row.p))), 0x1p-16) << "p " << row.p;
  }
}

// One Philox call serves the eight columns 8 (col / 8) .. + 7: column col takes the half
// col % 2 (0: low 16 bits) of word (col % 8) / 2. Counter (0, 0, 0, 0) with key (0, 0) is
// seed 0, offset 0, batch_head 0, row 0, columns 0..7: Random123's first known answer,
// {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}.
TEST(Dropout, ColumnTakesHalfOfWordColMod8Over2) {
  struct Row {
    uint32_t col;
    uint32_t value;
  };
  const Row rows[] = {
      {0, 0xe8d5}, {1, 0x6627}, {2, 0xc58d}, {3, 0xe169},
      {4, 0xac4c}, {5, 0xbc57}, {6, 0xdbd8}, {7, 0x9b00},
  };
  const Philox4 words = dropout_random_words(0, 0, 0, 0, 0);
  for (const Row& row : rows) {
    EXPECT_EQ(dropout_value(words, row.col), row.value) << "col " << row.col;
    // The boundary: kept iff value < threshold.
    EXPECT_FALSE(dropout_keeps(0, 0, 0, 0, row.col, row.value)) << "col " << row.col;
    EXPECT_TRUE(dropout_keeps(0, 0, 0, 0, row.col, row.value + 1)) << "col " << row.col;
  }
  // Any coordinates: column col of group col / 8, against the words taken apart by hand.
  for (uint32_t col = 0; col < 64; ++col) {
    const Philox4 group =
        dropout_random_words(0x0123456789abcdefull, 5ull << 33 | 17, 3, 9, col / 8);
    const uint32_t word_index = (col % 8) / 2;
    const uint32_t word = word_index == 0   ? group.x
                          : word_index == 1 ? group.y
                          : word_index == 2 ? group.z
                                            : group.w;
    const uint32_t value = col % 2 == 0 ? word & 0xFFFFu : word >> 16;
    EXPECT_EQ(dropout_value(group, col), value) << "col " << col;
    EXPECT_EQ(dropout_keeps(0x0123456789abcdefull, 5ull << 33 | 17, 3, 9, col, value), false);
    EXPECT_EQ(dropout_keeps(0x0123456789abcdefull, 5ull << 33 | 17, 3, 9, col, value + 1), true);
  }
}

// The number kept is Binomial(n, keep), keep = threshold / 2^16 (within 2^-16 of 1 - p); 5
// sigma makes a false alarm ~1e-6 per check. The rate is also checked separately for each of
// the eight 16-bit values of a Philox call (col % 8: four words, two halves each).
TEST(Dropout, KeepRateWithinBinomialBound) {
  for (float p : {0.05f, 0.1f, 0.3f, 0.5f, 0.8f, 0.95f}) {
    const uint32_t batch_heads = 6, rows = 64, cols = 512;
    const std::vector<uint8_t> mask =
        keep_mask(0x9e3779b97f4a7c15ull, 11, p, batch_heads, rows, cols);
    const double keep = static_cast<double>(dropout_keep_threshold(p)) / 65536.0;
    EXPECT_LE(std::abs(keep - (1.0 - static_cast<double>(p))), 0x1p-16) << "p " << p;
    const double n = static_cast<double>(mask.size());
    const double sigma = std::sqrt(n * keep * (1.0 - keep));
    EXPECT_LE(std::abs(static_cast<double>(count_kept(mask)) - n * keep), 5 * sigma) << "p " << p;

    for (uint32_t slot = 0; slot < 8; ++slot) {  // cols is a multiple of 8: index % 8 = col % 8
      int64_t kept = 0, total = 0;
      for (size_t i = slot; i < mask.size(); i += 8) {
        kept += mask[i];
        ++total;
      }
      const double slot_sigma = std::sqrt(total * keep * (1.0 - keep));
      EXPECT_LE(std::abs(static_cast<double>(kept) - total * keep), 5 * slot_sigma)
          << "p " << p << " col % 8 " << slot;
    }
  }
}

TEST(Dropout, SameSeedAndOffsetGiveTheSameMask) {
  const auto first = keep_mask(123, 456, 0.3f, 4, 32, 100);
  const auto second = keep_mask(123, 456, 0.3f, 4, 32, 100);
  EXPECT_EQ(first, second);
}

// Independent masks differ in a fraction 2p(1-p) of the elements (0.42 for p = 0.3); 0.3 is
// far below that and far above the 0 of a dependence on a missing input.
TEST(Dropout, DifferentSeedOrOffsetGiveDifferentMasks) {
  const float p = 0.3f;
  const auto base = keep_mask(123, 456, p, 4, 32, 100);
  const double threshold = 0.3 * static_cast<double>(base.size());
  const std::vector<std::pair<uint64_t, uint64_t>> others = {
      {124, 456},                    // seed, low half
      {123ull | (1ull << 40), 456},  // seed, high half
      {123, 457},                    // offset, low half
      {123, 456ull | (1ull << 40)},  // offset, high half (folded into the key)
  };
  for (const auto& [seed, offset] : others) {
    const auto other = keep_mask(seed, offset, p, 4, 32, 100);
    EXPECT_GT(static_cast<double>(count_differences(base, other)), threshold)
        << "seed " << seed << " offset " << offset;
  }
}

// Neighbouring column groups, rows and batch-heads must draw different Philox words.
TEST(Dropout, CounterCoordinatesAreDistinct) {
  const Philox4 base = dropout_random_words(99, 0, 0, 0, 0);
  const Philox4 neighbours[] = {
      dropout_random_words(99, 0, 0, 0, 1),  // next column group
      dropout_random_words(99, 0, 0, 1, 0),  // next row
      dropout_random_words(99, 0, 1, 0, 0),  // next batch-head
  };
  for (const Philox4& other : neighbours) {
    EXPECT_FALSE(base.x == other.x && base.y == other.y && base.z == other.z && base.w == other.w);
  }
}

// The oracle's mask (through the public API, Backend::cpu_reference) is philox.h's decision
// with batch_head = b * heads_q + h and row/col counted within each sequence, on visible
// elements, and 0 elsewhere.
TEST(Dropout, ReferenceMaskEqualsPhilox) {
  using testing::AttentionCase;
  AttentionCase dense_case;
  dense_case.dtype = DType::fp32;
  dense_case.batch = 2;
  dense_case.seqlen_q = 37;
  dense_case.seqlen_k = 45;
  dense_case.heads_q = 4;
  dense_case.heads_kv = 2;
  dense_case.head_dim = 16;
  dense_case.dropout_p = 0.35f;
  AttentionCase causal_case = dense_case;
  causal_case.causal = true;
  causal_case.window_left = 9;
  AttentionCase varlen_case = dense_case;
  varlen_case.varlen = {{20, 45}, {0, 7}, {37, 30}, {5, 0}};
  varlen_case.use_seqused_k = true;

  for (const AttentionCase& config : {dense_case, causal_case, varlen_case}) {
    SCOPED_TRACE(config.name());
    testing::HostProblem problem = testing::make_problem(config, 31);
    ForwardParams params = problem.forward_params();
    params.backend = Backend::cpu_reference;
    const Status status = flashattn::forward(params);
    ASSERT_TRUE(status.ok()) << status.message();
    std::vector<reference::SequenceBounds> sequences;
    ASSERT_TRUE(reference::sequence_bounds(params, &sequences).ok());

    const uint32_t threshold = dropout_keep_threshold(params.dropout_p);
    const auto mask = problem.bytes(testing::BufferId::dropout_mask);
    const int64_t right = params.causal ? 0 : params.window_right;
    int64_t visible = 0, kept = 0, mismatches = 0;
    for (int64_t b = 0; b < params.batch; ++b) {
      const reference::SequenceBounds& sequence = sequences[static_cast<size_t>(b)];
      const MaskSpec spec{sequence.len_q, sequence.used_k, params.window_left, right};
      for (int64_t h = 0; h < params.heads_q; ++h) {
        for (int64_t row = 0; row < params.seqlen_q; ++row) {
          for (int64_t col = 0; col < params.seqlen_k; ++col) {
            const size_t index = static_cast<size_t>(
                ((b * params.heads_q + h) * params.seqlen_q + row) * params.seqlen_k + col);
            uint8_t expected = 0;
            if (row < sequence.len_q && spec.visible(row, col)) {
              ++visible;
              expected =
                  dropout_keeps(params.dropout_seed, params.dropout_offset,
                                static_cast<uint32_t>(b * params.heads_q + h),
                                static_cast<uint32_t>(row), static_cast<uint32_t>(col), threshold)
                      ? 1
                      : 0;
              kept += expected;
            }
            mismatches += static_cast<uint8_t>(mask[index]) != expected ? 1 : 0;
          }
        }
      }
    }
    EXPECT_EQ(mismatches, 0);
    EXPECT_GT(visible, 0);
    EXPECT_GT(kept, 0);
    EXPECT_LT(kept, visible);
  }
}

}  // namespace
// dropout_seed_offset (here in host memory, as a CPU call takes it) overrides the scalar seed
// and offset: the same pair gives the scalars' bits, on both CPU backends.
TEST(Dropout, SeedOffsetPairOverridesTheScalars) {
  using testing::AttentionCase;
  AttentionCase config;
  config.dtype = DType::fp32;
  config.batch = 2;
  config.seqlen_q = 37;
  config.seqlen_k = 45;
  config.heads_q = 2;
  config.heads_kv = 2;
  config.head_dim = 16;
  config.dropout_p = 0.35f;
  for (Backend backend : {Backend::cpu_reference, Backend::cpu_tiled}) {
    SCOPED_TRACE(to_string(backend));
    testing::HostProblem by_scalars = testing::make_problem(config, 31);
    ForwardParams scalars = by_scalars.forward_params();
    scalars.backend = backend;
    ASSERT_TRUE(flashattn::forward(scalars).ok());

    testing::HostProblem by_pair = testing::make_problem(config, 31);
    ForwardParams paired = by_pair.forward_params();
    paired.backend = backend;
    const int64_t pair[2] = {static_cast<int64_t>(scalars.dropout_seed),
                             static_cast<int64_t>(scalars.dropout_offset)};
    paired.dropout_seed = scalars.dropout_seed + 1;  // must be ignored
    paired.dropout_offset = scalars.dropout_offset + 7;
    paired.dropout_seed_offset = pair;
    ASSERT_TRUE(flashattn::forward(paired).ok());
    for (testing::BufferId id : {testing::BufferId::out, testing::BufferId::dropout_mask}) {
      const auto expected = by_scalars.bytes(id);
      const auto actual = by_pair.bytes(id);
      ASSERT_EQ(expected.size(), actual.size());
      EXPECT_TRUE(std::equal(expected.begin(), expected.end(), actual.begin()));
    }
  }
}

}  // namespace flashattn
