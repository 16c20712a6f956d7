// The shared case tables (contract_rows.h): one place for the rows every backend runs.
#include "support/contract_rows.h"

#include "support/case_builders.h"

namespace flashattn::testing {

std::vector<AttentionCase> contract_rows(Fp32Rows fp32_rows) {
  constexpr DType f16 = DType::fp16, b16 = DType::bf16;
  // fp32 where the backend has it, else the half type given.
  const auto f32_or = [fp32_rows](DType half) {
    return fp32_rows == Fp32Rows::keep ? DType::fp32 : half;
  };
  return {
      // Sizes and head dims, no features.
      dense(f32_or(f16), 1, 1, 1, 1, 1, 64),
      dense(b16, 1, 1, 1023, 4, 1, 128),  // one query, long keys (decode shape), MQA
      dense(f16, 1, 113, 203, 2, 2, 32),
      dense(b16, 3, 203, 113, 2, 1, 59),
      dense(f32_or(f16), 3, 113, 203, 2, 2, 1),
      dense(f16, 1, 203, 113, 2, 2, 111),
      dense(b16, 1, 113, 113, 2, 2, 256),
      dense(f32_or(b16), 1, 203, 203, 1, 1, 256),
      dense(f16, 1, 1023, 1023, 2, 2, 64),
      dense(b16, 1, 113, 1023, 16, 2, 64),  // GQA 8:1
      dense(f16, 3, 203, 1, 4, 1, 128),     // a single key
      scale(dense(f32_or(b16), 1, 113, 203, 2, 2, 59), 0.3f),
      dense(b16, 3, 1023, 203, 2, 2, 1),
      dense(f32_or(f16), 3, 113, 1023, 8, 1, 32),  // MQA
      dense(f16, 1, 1023, 1023, 2, 1, 256),
      dense(b16, 3, 203, 203, 24, 3, 111),  // GQA 8:1 with 3 kv heads
      value_dim(dense(b16, 1, 113, 203, 2, 1, 64), 32),
      value_dim(causal(dense(f32_or(f16), 3, 203, 113, 2, 2, 59)), 128),

      // Large scores: the running max moves between key tiles, probabilities underflow.
      scale(dense(b16, 1, 203, 1023, 2, 2, 64), 2.0f),
      scale(causal(dense(f32_or(f16), 3, 113, 203, 2, 1, 128)), 1.5f),
      scale(dropout(dense(f16, 1, 113, 1023, 2, 2, 32), 0.3f), 1.0f),

      // Causal (bottom-right aligned) and sliding windows.
      causal(dense(b16, 1, 1023, 1023, 2, 2, 64)),
      causal(dense(f16, 3, 113, 203, 2, 1, 128)),
      causal(dense(f32_or(b16), 1, 203, 113, 2, 2, 32)),  // rows 0..89 see no key: out 0, LSE +inf
      causal(dense(b16, 1, 1023, 113, 2, 1, 59)),         // most rows see no key
      window(dense(f16, 1, 203, 203, 2, 2, 64), 32, 16),
      window(dense(b16, 3, 113, 203, 8, 1, 111), 0, 0),  // exactly one key per row (MQA)
      window(dense(f32_or(f16), 1, 203, 113, 2, 2, 64), -1, 7),
      window(dense(b16, 1, 113, 203, 2, 2, 128), 40, -1),
      window(causal(dense(f16, 1, 1023, 1023, 1, 1, 128)), 100, 0),
      causal(dense(b16, 1, 1023, 1023, 2, 2, 256)),
      causal(dense(f32_or(f16), 3, 1, 203, 4, 1, 64)),    // one query sees every key
      window(dense(b16, 1, 1023, 113, 2, 2, 32), -1, 0),  // causal spelled as a window
      window(dense(f32_or(f16), 3, 113, 1023, 2, 1, 1), 3, 200),

      // Softcap, ALiBi, dropout, alone and combined.
      softcap(dense(b16, 1, 113, 203, 2, 2, 64), 2.0f),
      softcap(causal(dense(f32_or(f16), 3, 203, 113, 2, 1, 32)), 5.0f),
      alibi(dense(f16, 1, 203, 113, 4, 2, 64), AlibiMode::per_head),
      alibi(causal(dense(b16, 3, 113, 203, 2, 1, 128)), AlibiMode::per_batch_head),
      dropout(dense(f32_or(f16), 1, 113, 203, 2, 2, 64), 0.1f),
      dropout(causal(dense(b16, 3, 203, 113, 2, 1, 59)), 0.3f),
      dropout(dense(f16, 1, 1023, 203, 2, 2, 32), 0.5f),
      softcap(dense(f16, 3, 203, 113, 4, 1, 256), 1.0f),
      alibi(window(dense(f32_or(b16), 1, 1023, 1023, 2, 2, 64), 64, 64), AlibiMode::per_head),
      dropout(softcap(causal(dense(f32_or(f16), 1, 113, 113, 16, 2, 59)), 10.0f), 0.9f),
      dropout(alibi(softcap(window(dense(b16, 1, 203, 203, 4, 1, 111), 50, 20), 3.0f),
                    AlibiMode::per_head),
              0.2f),

      // Varlen (with empty sequences on either side), seqused_k.
      varlen(f16, {{113, 203}, {0, 50}, {37, 0}, {1, 1}}, 2, 2, 64),
      causal(varlen(b16, {{203, 113}, {1, 203}, {0, 0}, {113, 113}}, 4, 1, 32)),
      dropout(varlen(f32_or(f16), {{50, 70}, {113, 1}, {7, 113}}, 2, 1, 128), 0.25f),
      alibi(window(varlen(b16, {{113, 203}, {203, 113}}, 2, 2, 59), 30, 30),
            AlibiMode::per_batch_head),
      varlen(f32_or(b16), {{1, 1}, {1023, 1023}, {0, 1}}, 2, 1, 64),
      dropout(causal(varlen(f16, {{113, 113}, {203, 1023}, {1, 0}}, 8, 1, 111)), 0.1f),
      seqused(dense(f16, 3, 113, 203, 2, 2, 64)),
      seqused(causal(dense(b16, 3, 203, 113, 2, 1, 128))),
      seqused(varlen(f32_or(b16), {{113, 203}, {37, 0}, {50, 60}}, 2, 2, 32)),

      // Strided layouts (stride gaps hold NaN; outputs' gaps must stay untouched).
      layout(dense(b16, 3, 113, 203, 2, 1, 64), Layout::padded),
      layout(causal(dense(f16, 1, 203, 113, 4, 2, 59)), Layout::heads_major),
      layout(dropout(dense(f32_or(b16), 3, 113, 113, 2, 2, 111), 0.15f), Layout::padded),
      layout(varlen(b16, {{113, 203}, {0, 7}, {60, 60}}, 2, 2, 128), Layout::padded),
      layout(seqused(varlen(f16, {{203, 113}, {1, 50}}, 4, 1, 64)), Layout::heads_major),
      layout(softcap(alibi(dense(b16, 1, 113, 203, 2, 2, 256), AlibiMode::per_head), 4.0f),
             Layout::padded),
  };
}

std::vector<AttentionCase> cuda_extra_rows() {
  constexpr DType f16 = DType::fp16, b16 = DType::bf16;
  return {
      dense(b16, 1, 1023, 1023, 4, 1, 128),
      scale(dense(f16, 1, 113, 203, 2, 2, 64), -0.5f),  // negative scale: extras path
      dense(f16, 1, 203, 203, 2, 2, 160),
      dense(b16, 1, 203, 203, 2, 2, 80),
      value_dim(dense(b16, 1, 203, 203, 2, 1, 256), 40),
      // Softcaps far above the scores: c tanh(s / c) ~ s must stay exact (a tanh with an
      // absolute error moved every score by c times it).
      softcap(dense(b16, 1, 113, 203, 2, 2, 128), 1e6f),
      softcap(causal(dense(f16, 1, 203, 113, 2, 1, 64)), 1e4f),
  };
}

std::vector<AttentionCase> small_rows() {
  constexpr DType f16 = DType::fp16, b16 = DType::bf16;
  return {
      dense(b16, 1, 1, 1, 1, 1, 64),
      dense(f16, 2, 77, 45, 2, 1, 32),
      dense(b16, 1, 45, 130, 2, 2, 96),
      dense(f16, 1, 130, 77, 2, 2, 128),
      dense(b16, 1, 77, 77, 1, 1, 192),
      dense(f16, 1, 45, 130, 1, 1, 256),
      // Many key blocks: the d256 kernel's per-buffer mbarriers go through both phase parities
      // several times (nine blocks of 64), the d128 kernel's early first V with five. One head
      // at d256: racecheck of the backward over two heads took ~30 s.
      dense(b16, 1, 130, 520, 1, 1, 256),
      dense(f16, 1, 77, 300, 2, 2, 128),
      dense(b16, 1, 45, 600, 1, 1, 96),  // d96's mbarriers, ten blocks
      // d192: the 128-row pair-split kernel past 512 keys (ten blocks: both mbarrier parities);
      // below, two query blocks of the 64-row tile; and its extras kernel (64 rows too).
      dense(b16, 1, 130, 600, 1, 1, 192),
      causal(dense(f16, 1, 130, 300, 1, 1, 192)),
      softcap(causal(dense(b16, 1, 77, 130, 2, 1, 192)), 5.0f),
      causal(dense(b16, 1, 130, 77, 2, 1, 256)),  // d256 masked, rows that see no key, GQA
      causal(dense(f16, 1, 77, 150, 2, 1, 231)),  // tile width 256, unaligned rows
      dense(b16, 2, 77, 45, 4, 1, 33),            // odd head dim: unaligned rows, scalar copies
      value_dim(dense(f16, 1, 45, 77, 2, 1, 64), 96),
      causal(dense(b16, 1, 130, 45, 2, 2, 64)),  // rows that see no key
      window(dense(f16, 1, 130, 130, 2, 1, 64), 20, 5),
      softcap(dense(b16, 1, 77, 130, 2, 2, 64), 3.0f),
      alibi(causal(dense(f16, 2, 77, 45, 2, 1, 128)), AlibiMode::per_batch_head),
      dropout(dense(b16, 1, 77, 130, 2, 2, 64), 0.3f),
      varlen(f16, {{77, 130}, {0, 20}, {30, 0}, {1, 1}}, 2, 1, 64),
      seqused(causal(dense(b16, 3, 77, 45, 2, 1, 128))),
      layout(dense(f16, 2, 45, 77, 2, 1, 64), Layout::padded),
      layout(causal(dense(b16, 1, 77, 45, 2, 2, 128)), Layout::heads_major),
  };
}

}  // namespace flashattn::testing
