// The oracle checked on its own: fp64 gradients against central finite differences of its
// forward, per feature; forward values against answers known in closed form; the rounding of
// its input_dtype mode.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "common/philox.h"
#include "cpu/element.h"
#include "cpu/reference/reference.h"
#include "support/attention_case.h"
#include "support/host_problem.h"

namespace flashattn::reference {
namespace {

// A small problem on dense double arrays (layout of cpu/reference/sequences.h) with the host
// arrays its args point to.
struct DenseProblem {
  std::string name;
  AttentionArgs args;
  std::vector<std::pair<int32_t, int32_t>> varlen;  // (len_q, len_k) per sequence; empty: dense
  bool use_seqused_k = false;
  bool alibi = false;
  int64_t alibi_batch_stride = 0;

  std::vector<int32_t> cu_q, cu_k, seqused;
  std::vector<float> slopes;
  std::vector<double> q, k, v, dout;

  // Fills the arrays (deterministic from seed) and points args at them.
  void build(uint64_t seed) {
    if (!varlen.empty()) {
      cu_q = {0};
      cu_k = {0};
      int64_t max_q = 0, max_k = 0;
      for (const auto& [len_q, len_k] : varlen) {
        cu_q.push_back(cu_q.back() + len_q);
        cu_k.push_back(cu_k.back() + len_k);
        max_q = std::max<int64_t>(max_q, len_q);
        max_k = std::max<int64_t>(max_k, len_k);
      }
      args.batch = static_cast<int64_t>(varlen.size());
      args.seqlen_q = max_q;
      args.seqlen_k = max_k;
      args.total_q = cu_q.back();
      args.total_k = cu_k.back();
      args.cu_seqlens_q = cu_q.data();
      args.cu_seqlens_k = cu_k.data();
    }
    if (use_seqused_k) {
      for (int64_t b = 0; b < args.batch; ++b) {
        const int64_t len_k = varlen.empty() ? args.seqlen_k : varlen[b].second;
        seqused.push_back(static_cast<int32_t>(len_k - 1 - b % 2 > 0 ? len_k - 1 - b % 2 : 0));
      }
      args.seqused_k = seqused.data();
    }
    if (alibi) {
      const int64_t rows = alibi_batch_stride > 0 ? args.batch : 1;
      slopes.assign(
          static_cast<size_t>(std::max<int64_t>(rows * alibi_batch_stride, 1) + args.heads_q),
          std::numeric_limits<float>::quiet_NaN());
      for (int64_t b = 0; b < rows; ++b) {
        for (int64_t h = 0; h < args.heads_q; ++h) {
          slopes[static_cast<size_t>(b * alibi_batch_stride + h)] = 0.25f * (h + 1) + 0.1f * b;
        }
      }
      args.alibi_slopes = slopes.data();
      args.alibi_batch_stride = alibi_batch_stride;
    }
    const int64_t dim_v = args.head_dim_v == 0 ? args.head_dim : args.head_dim_v;
    const int64_t rows_q = varlen.empty() ? args.batch * args.seqlen_q : args.total_q;
    const int64_t rows_k = varlen.empty() ? args.batch * args.seqlen_k : args.total_k;
    uint64_t state = seed;
    auto random = [&state] {  // uniform in [-1, 1): smooth inputs are all finite differences need
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      return static_cast<double>(state >> 11) * 0x1.0p-52 - 1.0;
    };
    auto fill = [&](std::vector<double>* values, int64_t size) {
      values->resize(static_cast<size_t>(size));
      for (double& value : *values) value = random();
    };
    fill(&q, rows_q * args.heads_q * args.head_dim);
    fill(&k, rows_k * args.heads_kv * args.head_dim);
    fill(&v, rows_k * args.heads_kv * dim_v);
    fill(&dout, rows_q * args.heads_q * dim_v);
  }

  // L = sum(out * dout): its gradient is what backward computes for this dout.
  double loss(const std::vector<double>& q_in, const std::vector<double>& k_in,
              const std::vector<double>& v_in) const {
    ForwardResult result;
    const Status status = forward_dense(args, Precision::fp64, q_in, k_in, v_in, &result);
    EXPECT_TRUE(status.ok()) << status.message();
    double total = 0;
    for (size_t i = 0; i < result.out.size(); ++i) total += result.out[i] * dout[i];
    return total;
  }
};

void PrintTo(const DenseProblem& problem, std::ostream* stream) {
  *stream << problem.name;
}

DenseProblem base_problem(std::string name) {
  DenseProblem p;
  p.name = std::move(name);
  p.args.dtype = DType::fp32;
  p.args.batch = 2;
  p.args.seqlen_q = 5;
  p.args.seqlen_k = 7;
  p.args.heads_q = 2;
  p.args.heads_kv = 2;
  p.args.head_dim = 4;
  p.args.softmax_scale = 0.7f;
  return p;
}

std::vector<DenseProblem> gradcheck_table() {
  std::vector<DenseProblem> table;
  table.push_back(base_problem("plain"));
  {
    DenseProblem p = base_problem("causal_q_longer_than_k");  // rows 0..1 see no key
    p.args.seqlen_q = 7;
    p.args.seqlen_k = 5;
    p.args.causal = true;
    table.push_back(p);
  }
  {
    DenseProblem p = base_problem("window_2_1");
    p.args.window_left = 2;
    p.args.window_right = 1;
    table.push_back(p);
  }
  {
    DenseProblem p = base_problem("gqa_4_2");
    p.args.heads_q = 4;
    table.push_back(p);
  }
  {
    DenseProblem p = base_problem("mqa_3_1");
    p.args.heads_q = 3;
    p.args.heads_kv = 1;
    p.args.causal = true;
    table.push_back(p);
  }
  {
    DenseProblem p = base_problem("varlen_with_empty_sequences");
    p.varlen = {{4, 6}, {0, 3}, {3, 0}, {5, 5}};
    p.args.causal = true;
    table.push_back(p);
  }
  {
    DenseProblem p = base_problem("seqused_k");
    p.use_seqused_k = true;
    table.push_back(p);
  }
  {
    DenseProblem p = base_problem("softcap");
    p.args.softmax_scale = 2.0f;  // scores reach the nonlinear part of tanh
    p.args.softcap = 1.5f;
    table.push_back(p);
  }
  {
    DenseProblem p = base_problem("alibi_per_head");
    p.alibi = true;
    table.push_back(p);
  }
  {
    DenseProblem p = base_problem("alibi_per_batch_head");
    p.alibi = true;
    p.alibi_batch_stride = 3;
    p.args.causal = true;
    table.push_back(p);
  }
  {
    DenseProblem p = base_problem("dropout");
    p.args.dropout_p = 0.3f;
    p.args.dropout_seed = 0x0123456789abcdefull;
    p.args.dropout_offset = 0xfedcba9876543210ull;
    table.push_back(p);
  }
  {
    DenseProblem p = base_problem("head_dim_v_differs");
    p.args.head_dim_v = 3;
    table.push_back(p);
  }
  {
    DenseProblem p = base_problem("everything");
    p.varlen = {{5, 7}, {6, 2}, {0, 4}};
    p.args.heads_q = 4;
    p.args.head_dim_v = 5;
    p.args.window_left = 3;
    p.args.causal = true;
    p.args.softcap = 2.0f;
    p.alibi = true;
    p.alibi_batch_stride = 4;
    p.use_seqused_k = true;
    p.args.dropout_p = 0.25f;
    p.args.dropout_seed = 42;
    p.args.dropout_offset = 7;
    table.push_back(p);
  }
  return table;
}

class ReferenceGradcheck : public ::testing::TestWithParam<DenseProblem> {};

// Central differences with h = 1e-5: truncation ~h^2 and cancellation ~1e-16/h both stay
// below 1e-9, so 1e-7 is tight yet safe.
TEST_P(ReferenceGradcheck, MatchesFiniteDifferences) {
  DenseProblem problem = GetParam();
  problem.build(/*seed=*/1234);
  BackwardResult grads;
  const Status status = backward_dense(problem.args, Precision::fp64, problem.q, problem.k,
                                       problem.v, problem.dout, {}, &grads);
  ASSERT_TRUE(status.ok()) << status.message();

  constexpr double kStep = 1e-5, kTolerance = 1e-7;
  double largest_gradient = 0;
  auto check = [&](const char* name, std::vector<double>* input, const std::vector<double>& grad) {
    ASSERT_EQ(input->size(), grad.size()) << name;
    for (size_t i = 0; i < input->size(); ++i) {
      const double saved = (*input)[i];
      (*input)[i] = saved + kStep;
      const double up = problem.loss(problem.q, problem.k, problem.v);
      (*input)[i] = saved - kStep;
      const double down = problem.loss(problem.q, problem.k, problem.v);
      (*input)[i] = saved;
      const double numeric = (up - down) / (2 * kStep);
      EXPECT_NEAR(grad[i], numeric, kTolerance) << name << "[" << i << "]";
      largest_gradient = std::max(largest_gradient, std::abs(grad[i]));
    }
  };
  check("dq", &problem.q, grads.dq);
  check("dk", &problem.k, grads.dk);
  check("dv", &problem.v, grads.dv);
  EXPECT_GT(largest_gradient, 1e-2) << "gradients vanish: the comparison would prove nothing";
}

INSTANTIATE_TEST_SUITE_P(Features, ReferenceGradcheck, ::testing::ValuesIn(gradcheck_table()),
                         [](const ::testing::TestParamInfo<DenseProblem>& info) {
                           return info.param.name;
                         });

// With q = 0 every visible score is 0 (no ALiBi, no softcap effect), so each row's out is the
// mean of the visible values and LSE = log(count): checks the mask from the DESIGN.md formula,
// written out independently here.
TEST(ReferenceForward, ZeroQueryAveragesExactlyTheVisibleKeys) {
  struct Window {
    bool causal;
    int64_t left, right;
  };
  for (const auto& [seqlen_q, seqlen_k] : {std::pair{5, 9}, {9, 5}, {6, 6}}) {
    for (const Window& window : {Window{false, -1, -1}, Window{true, -1, -1}, Window{false, 2, 1},
                                 Window{true, 1, -1}, Window{false, -1, 0}, Window{false, 0, 3}}) {
      DenseProblem p = base_problem("zero_query");
      p.args.seqlen_q = seqlen_q;
      p.args.seqlen_k = seqlen_k;
      p.args.causal = window.causal;
      p.args.window_left = window.left;
      p.args.window_right = window.right;
      p.build(99);
      std::fill(p.q.begin(), p.q.end(), 0.0);
      ForwardResult result;
      ASSERT_TRUE(forward_dense(p.args, Precision::fp64, p.q, p.k, p.v, &result).ok());
      const int64_t dim = p.args.head_dim, heads = p.args.heads_q;
      const int64_t right = window.causal ? 0 : window.right;
      for (int64_t b = 0; b < p.args.batch; ++b) {
        for (int64_t h = 0; h < heads; ++h) {
          for (int64_t i = 0; i < seqlen_q; ++i) {
            const int64_t aligned = i + seqlen_k - seqlen_q;
            int64_t count = 0;
            std::vector<double> mean(static_cast<size_t>(dim), 0.0);
            for (int64_t j = 0; j < seqlen_k; ++j) {
              if (right >= 0 && j > aligned + right) continue;
              if (window.left >= 0 && j < aligned - window.left) continue;
              ++count;
              for (int64_t d = 0; d < dim; ++d) {
                mean[d] += p.v[((b * seqlen_k + j) * heads + h) * dim + d];
              }
            }
            const double lse = result.lse[(b * heads + h) * seqlen_q + i];
            const double* out = &result.out[((b * seqlen_q + i) * heads + h) * dim];
            SCOPED_TRACE("sq " + std::to_string(seqlen_q) + " sk " + std::to_string(seqlen_k) +
                         " causal " + std::to_string(window.causal) + " window " +
                         std::to_string(window.left) + "," + std::to_string(window.right) +
                         " row " + std::to_string(i));
            if (count == 0) {
              EXPECT_EQ(lse, std::numeric_limits<double>::infinity());
              for (int64_t d = 0; d < dim; ++d) EXPECT_EQ(out[d], 0.0);
              continue;
            }
            EXPECT_NEAR(lse, std::log(static_cast<double>(count)), 1e-14);
            for (int64_t d = 0; d < dim; ++d) EXPECT_NEAR(out[d], mean[d] / count, 1e-14);
          }
        }
      }
    }
  }
}

// One key: out = v (p = 0) and LSE is the modified score itself, c*tanh(scale*q.k/c) + bias.
TEST(ReferenceForward, SingleKeyGivesValueAndModifiedScore) {
  DenseProblem p = base_problem("single_key");
  p.args.batch = 1;
  p.args.seqlen_q = 3;
  p.args.seqlen_k = 1;
  p.args.heads_q = 1;
  p.args.heads_kv = 1;
  p.args.softcap = 0.8f;
  p.alibi = true;
  p.build(5);
  ForwardResult result;
  ASSERT_TRUE(forward_dense(p.args, Precision::fp64, p.q, p.k, p.v, &result).ok());
  const double scale = p.args.softmax_scale, cap = p.args.softcap, slope = p.slopes[0];
  for (int64_t i = 0; i < 3; ++i) {
    double dot = 0;
    for (int64_t d = 0; d < 4; ++d) dot += p.q[i * 4 + d] * p.k[d];
    const double distance = std::abs(i + 1 - 3 - 0);  // |i + sk - sq - j|
    const double expected = cap * std::tanh(scale * dot / cap) - slope * distance;
    EXPECT_NEAR(result.lse[i], expected, 1e-12) << "row " << i;
    for (int64_t d = 0; d < 4; ++d) EXPECT_NEAR(result.out[i * 4 + d], p.v[d], 1e-14);
  }
}

// Two keys, q = 0, ALiBi only: weights proportional to exp(-slope * distance).
TEST(ReferenceForward, AlibiWeightsFollowDistance) {
  DenseProblem p = base_problem("alibi_two_keys");
  p.args.batch = 1;
  p.args.seqlen_q = 1;
  p.args.seqlen_k = 2;
  p.args.heads_q = 1;
  p.args.heads_kv = 1;
  p.alibi = true;
  p.build(6);
  std::fill(p.q.begin(), p.q.end(), 0.0);
  ForwardResult result;
  ASSERT_TRUE(forward_dense(p.args, Precision::fp64, p.q, p.k, p.v, &result).ok());
  const double slope = p.slopes[0];
  // Query 0 aligns with key 1 (bottom right): distances 1 and 0.
  const double w0 = std::exp(-slope), w1 = 1.0;
  for (int64_t d = 0; d < 4; ++d) {
    EXPECT_NEAR(result.out[d], (w0 * p.v[d] + w1 * p.v[4 + d]) / (w0 + w1), 1e-14);
  }
  EXPECT_NEAR(result.lse[0], std::log(w0 + w1), 1e-14);
}

// q = 0 with dropout: out = sum over kept keys of v / (count * (1 - p)), and the mask the
// oracle returns is philox.h's dropout_keeps element by element.
TEST(ReferenceForward, DropoutRescalesKeptValues) {
  DenseProblem p = base_problem("dropout_values");
  p.args.seqlen_q = 4;
  p.args.seqlen_k = 16;
  p.args.dropout_p = 0.4f;
  p.args.dropout_seed = 77;
  p.args.dropout_offset = 3;
  p.build(8);
  std::fill(p.q.begin(), p.q.end(), 0.0);
  std::vector<uint8_t> mask(static_cast<size_t>(2 * 2 * 4 * 16), 0xff);
  ForwardResult result;
  ASSERT_TRUE(forward_dense(p.args, Precision::fp64, p.q, p.k, p.v, &result, mask.data()).ok());
  const uint32_t threshold = dropout_keep_threshold(p.args.dropout_p);
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t i = 0; i < 4; ++i) {
        std::vector<double> expected(4, 0.0);
        for (int64_t j = 0; j < 16; ++j) {
          const bool keep =
              dropout_keeps(77, 3, static_cast<uint32_t>(b * 2 + h), static_cast<uint32_t>(i),
                            static_cast<uint32_t>(j), threshold);
          EXPECT_EQ(mask[((b * 2 + h) * 4 + i) * 16 + j], keep ? 1 : 0);
          if (!keep) continue;
          for (int64_t d = 0; d < 4; ++d) {
            expected[d] +=
                p.v[((b * 16 + j) * 2 + h) * 4 + d] / (16 * (1 - static_cast<double>(0.4f)));
          }
        }
        for (int64_t d = 0; d < 4; ++d) {
          EXPECT_NEAR(result.out[((b * 4 + i) * 2 + h) * 4 + d], expected[d], 1e-14);
        }
      }
    }
  }
}

// Backward with the forward's out given (use_given_out) equals backward recomputing it.
TEST(ReferenceBackward, GivenOutMatchesRecomputedOut) {
  DenseProblem p = base_problem("given_out");
  p.args.causal = true;
  p.args.dropout_p = 0.2f;
  p.args.dropout_seed = 5;
  p.build(21);
  ForwardResult forward;
  ASSERT_TRUE(forward_dense(p.args, Precision::fp64, p.q, p.k, p.v, &forward).ok());
  BackwardResult recomputed, given;
  ASSERT_TRUE(backward_dense(p.args, Precision::fp64, p.q, p.k, p.v, p.dout, {}, &recomputed).ok());
  ASSERT_TRUE(
      backward_dense(p.args, Precision::fp64, p.q, p.k, p.v, p.dout, forward.out, &given).ok());
  for (size_t i = 0; i < given.dq.size(); ++i) EXPECT_NEAR(given.dq[i], recomputed.dq[i], 1e-13);
  for (size_t i = 0; i < given.dk.size(); ++i) EXPECT_NEAR(given.dk[i], recomputed.dk[i], 1e-13);
  for (size_t i = 0; i < given.dv.size(); ++i) EXPECT_NEAR(given.dv[i], recomputed.dv[i], 1e-13);
}

// Precision::input_dtype: every output is a value of the dtype, it differs from fp64 by the
// dtype's rounding (not 0, not more), and for fp32 it is a plain fp32 algorithm.
TEST(ReferencePrecision, InputDtypeRoundsLikeTheDtype) {
  struct Expectation {
    DType dtype;
    double min_error, max_error;  // on out, whose entries are O(1)
  };
  for (const Expectation& e :
       {Expectation{DType::fp32, 0.0, 1e-5}, Expectation{DType::fp16, 1e-5, 2e-2},
        Expectation{DType::bf16, 1e-4, 1e-1}}) {
    DenseProblem p = base_problem("rounding");
    p.args.dtype = e.dtype;
    p.args.seqlen_q = 16;
    p.args.seqlen_k = 24;
    p.args.head_dim = 32;
    p.args.softcap = 3.0f;
    p.build(4);
    for (double& value : p.q) value = cpu::round_to(e.dtype, static_cast<float>(value));
    for (double& value : p.k) value = cpu::round_to(e.dtype, static_cast<float>(value));
    for (double& value : p.v) value = cpu::round_to(e.dtype, static_cast<float>(value));
    for (double& value : p.dout) value = cpu::round_to(e.dtype, static_cast<float>(value));
    ForwardResult exact, lowp;
    ASSERT_TRUE(forward_dense(p.args, Precision::fp64, p.q, p.k, p.v, &exact).ok());
    ASSERT_TRUE(forward_dense(p.args, Precision::input_dtype, p.q, p.k, p.v, &lowp).ok());
    BackwardResult grads;
    ASSERT_TRUE(
        backward_dense(p.args, Precision::input_dtype, p.q, p.k, p.v, p.dout, {}, &grads).ok());
    double error = 0;
    for (size_t i = 0; i < exact.out.size(); ++i) {
      error = std::max(error, std::abs(exact.out[i] - lowp.out[i]));
    }
    SCOPED_TRACE(to_string(e.dtype));
    EXPECT_GT(error, e.min_error);
    EXPECT_LT(error, e.max_error);
    for (const std::vector<double>* values : {&lowp.out, &grads.dq, &grads.dk, &grads.dv}) {
      for (double value : *values) {
        ASSERT_EQ(value, cpu::round_to(e.dtype, static_cast<float>(value)));
      }
    }
  }
}

// Bad dense input comes back as a Status naming the argument, never a crash.
TEST(ReferenceForward, RejectsMismatchedDenseSizes) {
  DenseProblem p = base_problem("bad_sizes");
  p.build(1);
  p.q.pop_back();
  ForwardResult result;
  const Status status = forward_dense(p.args, Precision::fp64, p.q, p.k, p.v, &result);
  EXPECT_EQ(status.code(), StatusCode::invalid_argument);
  EXPECT_NE(status.message().find("q:"), std::string::npos) << status.message();

  DenseProblem gqa = base_problem("bad_heads");
  gqa.args.heads_q = 3;
  gqa.build(1);
  const Status heads = forward_dense(gqa.args, Precision::fp64, gqa.q, gqa.k, gqa.v, &result);
  EXPECT_EQ(heads.code(), StatusCode::invalid_argument);
  EXPECT_NE(heads.message().find("heads"), std::string::npos) << heads.message();
}

// The oracle reads host memory: params that name device buffers are refused, not read.
TEST(ReferenceForward, RefusesDeviceParams) {
  testing::HostProblem problem = testing::make_problem(testing::AttentionCase{}, 1);
  const ForwardParams params = problem.forward_params_at(problem.host_pointers(), Device::cuda);
  ForwardResult result;
  const Status status = forward(params, Precision::fp64, &result);
  EXPECT_EQ(status.code(), StatusCode::invalid_argument);
  EXPECT_NE(status.message().find("device"), std::string::npos) << status.message();
  BackwardResult grads;
  const Status backward_status = backward(
      problem.backward_params_at(problem.host_pointers(), Device::cuda), Precision::fp64, &grads);
  EXPECT_EQ(backward_status.code(), StatusCode::invalid_argument);
}

}  // namespace
}  // namespace flashattn::reference
