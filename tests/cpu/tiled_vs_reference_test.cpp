// The main correctness table: Backend::cpu_tiled against the fp64 oracle, forward and backward.
//
// One row per case (not a cross product): every head-dim bucket, seqlens 1/113/203/1023 with
// seqlen_q != seqlen_k both ways, batch 1 and 3, GQA and MQA, each feature on and off, every
// dtype, varlen with empty sequences, seqused_k, strided layouts, rows that see no key.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string_view>
#include <vector>

#include "flashattn/flashattn.h"
#include "support/attention_case.h"
#include "support/checks.h"
#include "support/host_problem.h"

namespace flashattn::testing {
namespace {

// cpu_tiled; FLASHATTN_TABLE_BACKEND=cpu_reference runs the table against the oracle itself,
// which checks the table and the harness (it must pass up to the low-precision rounding).
Backend backend_under_test() {
  const char* name = std::getenv("FLASHATTN_TABLE_BACKEND");
  if (name != nullptr && std::string_view(name) == "cpu_reference") return Backend::cpu_reference;
  return Backend::cpu_tiled;
}

// Shorthands that keep each row on one line.
AttentionCase dense(DType dtype, int64_t batch, int64_t seqlen_q, int64_t seqlen_k, int64_t heads_q,
                    int64_t heads_kv, int64_t head_dim) {
  AttentionCase c;
  c.dtype = dtype;
  c.batch = batch;
  c.seqlen_q = seqlen_q;
  c.seqlen_k = seqlen_k;
  c.heads_q = heads_q;
  c.heads_kv = heads_kv;
  c.head_dim = head_dim;
  return c;
}

AttentionCase varlen(DType dtype, std::vector<std::pair<int64_t, int64_t>> lengths, int64_t heads_q,
                     int64_t heads_kv, int64_t head_dim) {
  AttentionCase c = dense(dtype, 1, 1, 1, heads_q, heads_kv, head_dim);
  c.varlen = std::move(lengths);
  return c;
}

AttentionCase causal(AttentionCase c) {
  c.causal = true;
  return c;
}
AttentionCase window(AttentionCase c, int64_t left, int64_t right) {
  c.window_left = left;
  c.window_right = right;
  return c;
}
AttentionCase softcap(AttentionCase c, float cap) {
  c.softcap = cap;
  return c;
}
AttentionCase alibi(AttentionCase c, AlibiMode mode) {
  c.alibi = mode;
  return c;
}
AttentionCase dropout(AttentionCase c, float p) {
  c.dropout_p = p;
  return c;
}
AttentionCase seqused(AttentionCase c) {
  c.use_seqused_k = true;
  return c;
}
AttentionCase layout(AttentionCase c, Layout l) {
  c.layout = l;
  return c;
}
AttentionCase scale(AttentionCase c, float s) {
  c.softmax_scale = s;
  return c;
}

constexpr DType f32 = DType::fp32, f16 = DType::fp16, b16 = DType::bf16;

std::vector<AttentionCase> table() {
  return {
      // Sizes and head dims, no features.
      dense(f32, 1, 1, 1, 1, 1, 64),
      dense(b16, 1, 1, 1023, 4, 1, 128),  // one query, long keys (decode shape), MQA
      dense(f16, 1, 113, 203, 2, 2, 32),
      dense(b16, 3, 203, 113, 2, 1, 59),
      dense(f32, 3, 113, 203, 2, 2, 1),
      dense(f16, 1, 203, 113, 2, 2, 111),
      dense(b16, 1, 113, 113, 2, 2, 256),
      dense(f32, 1, 203, 203, 1, 1, 256),
      dense(f16, 1, 1023, 1023, 2, 2, 64),
      dense(b16, 1, 113, 1023, 16, 2, 64),  // GQA 8:1
      dense(f16, 3, 203, 1, 4, 1, 128),     // a single key
      scale(dense(f32, 1, 113, 203, 2, 2, 59), 0.3f),

      // Causal (bottom-right aligned) and sliding windows.
      causal(dense(b16, 1, 1023, 1023, 2, 2, 64)),
      causal(dense(f16, 3, 113, 203, 2, 1, 128)),
      causal(dense(f32, 1, 203, 113, 2, 2, 32)),   // rows 0..89 see no key: out 0, LSE +inf
      causal(dense(b16, 1, 1023, 113, 2, 1, 59)),  // most rows see no key
      window(dense(f16, 1, 203, 203, 2, 2, 64), 32, 16),
      window(dense(b16, 3, 113, 203, 8, 1, 111), 0, 0),  // exactly one key per row (MQA)
      window(dense(f32, 1, 203, 113, 2, 2, 64), -1, 7),
      window(dense(b16, 1, 113, 203, 2, 2, 128), 40, -1),
      window(causal(dense(f16, 1, 1023, 1023, 1, 1, 128)), 100, 0),

      // Softcap, ALiBi, dropout, alone and combined.
      softcap(dense(b16, 1, 113, 203, 2, 2, 64), 2.0f),
      softcap(causal(dense(f32, 3, 203, 113, 2, 1, 32)), 5.0f),
      alibi(dense(f16, 1, 203, 113, 4, 2, 64), AlibiMode::per_head),
      alibi(causal(dense(b16, 3, 113, 203, 2, 1, 128)), AlibiMode::per_batch_head),
      dropout(dense(f32, 1, 113, 203, 2, 2, 64), 0.1f),
      dropout(causal(dense(b16, 3, 203, 113, 2, 1, 59)), 0.3f),
      dropout(dense(f16, 1, 1023, 203, 2, 2, 32), 0.5f),
      dropout(alibi(softcap(window(dense(b16, 1, 203, 203, 4, 1, 111), 50, 20), 3.0f),
                    AlibiMode::per_head),
              0.2f),

      // Varlen (with empty sequences on either side), seqused_k.
      varlen(f16, {{113, 203}, {0, 50}, {37, 0}, {1, 1}}, 2, 2, 64),
      causal(varlen(b16, {{203, 113}, {1, 203}, {0, 0}, {113, 113}}, 4, 1, 32)),
      dropout(varlen(f32, {{50, 70}, {113, 1}, {7, 113}}, 2, 1, 128), 0.25f),
      alibi(window(varlen(b16, {{113, 203}, {203, 113}}, 2, 2, 59), 30, 30),
            AlibiMode::per_batch_head),
      seqused(dense(f16, 3, 113, 203, 2, 2, 64)),
      seqused(causal(dense(b16, 3, 203, 113, 2, 1, 128))),
      seqused(varlen(f32, {{113, 203}, {37, 0}, {50, 60}}, 2, 2, 32)),

      // Strided layouts (stride gaps hold NaN; outputs' gaps must stay untouched).
      layout(dense(b16, 3, 113, 203, 2, 1, 64), Layout::padded),
      layout(causal(dense(f16, 1, 203, 113, 4, 2, 59)), Layout::heads_major),
      layout(dropout(dense(f32, 3, 113, 113, 2, 2, 111), 0.15f), Layout::padded),
      layout(varlen(b16, {{113, 203}, {0, 7}, {60, 60}}, 2, 2, 128), Layout::padded),
      layout(seqused(varlen(f16, {{203, 113}, {1, 50}}, 4, 1, 64)), Layout::heads_major),
      layout(softcap(alibi(dense(b16, 1, 113, 203, 2, 2, 256), AlibiMode::per_head), 4.0f),
             Layout::padded),
  };
}

class TiledVsReference : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(TiledVsReference, ForwardAndBackward) {
  const AttentionCase& row = GetParam();
  HostProblem problem = make_problem(row, /*seed=*/0x5eed0000 + row.head_dim);

  ForwardParams forward_params = problem.forward_params();
  forward_params.backend = backend_under_test();
  const Status forward_status = flashattn::forward(forward_params);
  ASSERT_TRUE(forward_status.ok()) << "forward: " << forward_status.message();
  EXPECT_TRUE(check_forward(problem));

  // The backward reads the out and LSE the backend under test just wrote.
  BackwardParams backward_params = problem.backward_params();
  backward_params.backend = backend_under_test();
  const Status backward_status = flashattn::backward(backward_params);
  ASSERT_TRUE(backward_status.ok()) << "backward: " << backward_status.message();
  EXPECT_TRUE(check_backward(problem));
}

INSTANTIATE_TEST_SUITE_P(Table, TiledVsReference, ::testing::ValuesIn(table()),
                         [](const ::testing::TestParamInfo<AttentionCase>& info) {
                           return info.param.name();
                         });

}  // namespace
}  // namespace flashattn::testing
