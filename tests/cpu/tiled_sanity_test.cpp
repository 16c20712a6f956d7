// Quick checks of the cpu_tiled backend: against a naive attention written here, bitwise
// determinism across runs and thread counts, agreement of its kernel sets, edge rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "api/backends.h"
#include "common/philox.h"
#include "common/score_mods.h"
#include "cpu/element.h"
#include "cpu/tiled/kernels.h"
#include "flashattn/flashattn.h"

namespace flashattn {
namespace {

// One dense [batch, seqlen, heads, dim] tensor: bytes in the dtype, and the same values as
// double (inputs are rounded to the dtype first, so both sides see identical numbers).
struct Tensor {
  DType dtype;
  int64_t seqlen, heads, dim;
  std::vector<unsigned char> bytes;
  std::vector<double> values;

  Tensor(DType type, int64_t batch, int64_t s, int64_t h, int64_t d)
      : dtype(type), seqlen(s), heads(h), dim(d) {
    bytes.assign(static_cast<size_t>(batch * s * h * d * element_size(type)), 0xff);  // NaN
    values.assign(static_cast<size_t>(batch * s * h * d), 0.0);
  }
  void fill_random(std::mt19937& engine) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (size_t i = 0; i < values.size(); ++i) {
      cpu::store_from_float(bytes.data(), static_cast<int64_t>(i), dtype, normal(engine));
      values[i] = cpu::load_as_float(bytes.data(), static_cast<int64_t>(i), dtype);
    }
  }
  double read(int64_t i) const { return cpu::load_as_float(bytes.data(), i, dtype); }
  int64_t index(int64_t b, int64_t s, int64_t h, int64_t d) const {
    return ((b * seqlen + s) * heads + h) * dim + d;
  }
  TensorRef ref() { return TensorRef{bytes.data(), seqlen * heads * dim, heads * dim, dim, 1}; }
};

// One row of the table.
struct SanityCase {
  std::string name;
  DType dtype = DType::fp32;
  int64_t batch = 1, seqlen_q = 1, seqlen_k = 1, heads_q = 1, heads_kv = 1, dim = 8, dim_v = 8;
  bool causal = false;
  int64_t window_left = -1, window_right = -1;
  float softcap = 0.0f;
  bool alibi = false;
  float dropout_p = 0.0f;
};

// Inputs and outputs of one case, and params pointing at them.
struct Problem {
  SanityCase config;
  Tensor q, k, v, out, dout, dq, dk, dv;
  std::vector<float> lse, slopes;
  std::vector<uint8_t> dropout_mask;

  explicit Problem(const SanityCase& c, uint32_t seed = 7)
      : config(c),
        q(c.dtype, c.batch, c.seqlen_q, c.heads_q, c.dim),
        k(c.dtype, c.batch, c.seqlen_k, c.heads_kv, c.dim),
        v(c.dtype, c.batch, c.seqlen_k, c.heads_kv, c.dim_v),
        out(c.dtype, c.batch, c.seqlen_q, c.heads_q, c.dim_v),
        dout(c.dtype, c.batch, c.seqlen_q, c.heads_q, c.dim_v),
        dq(c.dtype, c.batch, c.seqlen_q, c.heads_q, c.dim),
        dk(c.dtype, c.batch, c.seqlen_k, c.heads_kv, c.dim),
        dv(c.dtype, c.batch, c.seqlen_k, c.heads_kv, c.dim_v) {
    std::mt19937 engine(seed);
    q.fill_random(engine);
    k.fill_random(engine);
    v.fill_random(engine);
    dout.fill_random(engine);
    lse.assign(static_cast<size_t>(c.batch * c.heads_q * c.seqlen_q),
               std::numeric_limits<float>::quiet_NaN());
    for (int64_t h = 0; h < c.heads_q; ++h) slopes.push_back(0.25f / static_cast<float>(h + 1));
    dropout_mask.assign(static_cast<size_t>(c.batch * c.heads_q * c.seqlen_q * c.seqlen_k), 7);
  }

  AttentionArgs args(int threads) {
    AttentionArgs a;
    a.backend = Backend::cpu_tiled;
    a.dtype = config.dtype;
    a.batch = config.batch;
    a.seqlen_q = config.seqlen_q;
    a.seqlen_k = config.seqlen_k;
    a.heads_q = config.heads_q;
    a.heads_kv = config.heads_kv;
    a.head_dim = config.dim;
    a.head_dim_v = config.dim_v;
    a.q = q.ref();
    a.k = k.ref();
    a.v = v.ref();
    a.causal = config.causal;
    a.window_left = config.window_left;
    a.window_right = config.window_right;
    a.softcap = config.softcap;
    a.alibi_slopes = config.alibi ? slopes.data() : nullptr;
    a.dropout_p = config.dropout_p;
    a.dropout_seed = 0x1234567890abcdefull;
    a.dropout_offset = 42;
    a.num_threads = threads;
    return a;
  }
  ForwardParams forward_params(int threads = 0) {
    ForwardParams p;
    static_cast<AttentionArgs&>(p) = args(threads);
    p.out = out.ref();
    p.lse.data = lse.data();
    p.dropout_mask = config.dropout_p > 0.0f ? dropout_mask.data() : nullptr;
    return p;
  }
  BackwardParams backward_params(int threads = 0) {
    BackwardParams p;
    static_cast<AttentionArgs&>(p) = args(threads);
    p.out = out.ref();
    p.dout = dout.ref();
    p.lse.data = lse.data();
    p.dq = dq.ref();
    p.dk = dk.ref();
    p.dv = dv.ref();
    p.deterministic = true;
    return p;
  }
};

// Naive attention in double on the problem's (rounded) inputs: out, LSE, the kept-mask and
// the gradients, one query row at a time, straight from the DESIGN.md formulas.
struct NaiveResult {
  std::vector<double> out, lse, dq, dk, dv;
  std::vector<uint8_t> mask;
};

NaiveResult naive_attention(const Problem& p) {
  const SanityCase& c = p.config;
  NaiveResult r;
  r.out.assign(p.out.values.size(), 0.0);
  r.dq.assign(p.dq.values.size(), 0.0);
  r.dk.assign(p.dk.values.size(), 0.0);
  r.dv.assign(p.dv.values.size(), 0.0);
  r.lse.assign(p.lse.size(), std::numeric_limits<double>::infinity());
  r.mask.assign(p.dropout_mask.size(), 0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.dim));
  int64_t left = -1, right = -1;
  effective_window(c.causal, c.window_left, c.window_right, &left, &right);
  const MaskSpec mask{c.seqlen_q, c.seqlen_k, left, right};
  const uint32_t threshold = dropout_keep_threshold(c.dropout_p);
  const double rescale = 1.0 / (1.0 - static_cast<double>(c.dropout_p));
  const int64_t group = c.heads_q / c.heads_kv;
  std::vector<double> capped(static_cast<size_t>(c.seqlen_k)), prob(capped.size()),
      keep(capped.size());
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t h = 0; h < c.heads_q; ++h) {
      const int64_t hk = h / group;
      for (int64_t i = 0; i < c.seqlen_q; ++i) {
        double row_max = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < c.seqlen_k; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < c.dim; ++d) {
            dot += p.q.values[p.q.index(b, i, h, d)] * p.k.values[p.k.index(b, j, hk, d)];
          }
          capped[j] = modified_score<double>(dot, scale, c.softcap, 0.0);
          const double bias =
              c.alibi ? alibi_bias<double>(p.slopes[h], i, j, mask.diagonal()) : 0.0;
          prob[j] =
              mask.visible(i, j) ? capped[j] + bias : -std::numeric_limits<double>::infinity();
          row_max = std::max(row_max, prob[j]);
        }
        if (row_max == -std::numeric_limits<double>::infinity()) continue;  // sees no key
        double sum = 0;
        for (int64_t j = 0; j < c.seqlen_k; ++j) sum += prob[j] = std::exp(prob[j] - row_max);
        r.lse[(b * c.heads_q + h) * c.seqlen_q + i] = row_max + std::log(sum);
        const uint32_t batch_head = static_cast<uint32_t>(b * c.heads_q + h);
        for (int64_t j = 0; j < c.seqlen_k; ++j) {
          prob[j] /= sum;
          const bool kept =
              c.dropout_p == 0.0f ||
              dropout_keeps(0x1234567890abcdefull, 42, batch_head, static_cast<uint32_t>(i),
                            static_cast<uint32_t>(j), threshold);
          keep[j] = kept ? rescale : 0.0;
          r.mask[((b * c.heads_q + h) * c.seqlen_q + i) * c.seqlen_k + j] =
              kept && mask.visible(i, j) ? 1 : 0;
        }
        double delta = 0;  // D = rowsum(dO * O), O computed here
        for (int64_t d = 0; d < c.dim_v; ++d) {
          double o = 0;
          for (int64_t j = 0; j < c.seqlen_k; ++j) {
            o += prob[j] * keep[j] * p.v.values[p.v.index(b, j, hk, d)];
          }
          r.out[p.out.index(b, i, h, d)] = o;
          delta += o * p.dout.values[p.dout.index(b, i, h, d)];
        }
        for (int64_t j = 0; j < c.seqlen_k; ++j) {
          double dprob = 0;
          for (int64_t d = 0; d < c.dim_v; ++d) {
            const double g = p.dout.values[p.dout.index(b, i, h, d)];
            dprob += g * p.v.values[p.v.index(b, j, hk, d)];
            r.dv[p.dv.index(b, j, hk, d)] += prob[j] * keep[j] * g;
          }
          const double ddot = prob[j] * (dprob * keep[j] - delta) *
                              modified_score_grad<double>(capped[j], scale, c.softcap);
          for (int64_t d = 0; d < c.dim; ++d) {
            r.dq[p.dq.index(b, i, h, d)] += ddot * p.k.values[p.k.index(b, j, hk, d)];
            r.dk[p.dk.index(b, j, hk, d)] += ddot * p.q.values[p.q.index(b, i, h, d)];
          }
        }
      }
    }
  }
  return r;
}

// Largest |actual - expected| relative to the largest |expected| (at least 1).
double relative_error(const Tensor& actual, const std::vector<double>& expected) {
  double max_error = 0, max_value = 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double value = actual.read(static_cast<int64_t>(i));
    if (std::isnan(value)) return std::numeric_limits<double>::infinity();
    max_error = std::max(max_error, std::abs(value - expected[i]));
    max_value = std::max(max_value, std::abs(expected[i]));
  }
  return max_error / max_value;
}

// Tolerances of a dtype for outputs and gradients (relative to the largest magnitude): the
// inputs are exact in both computations, so the error is the backend's own rounding.
double tolerance(DType dtype) {
  switch (dtype) {
    case DType::fp32: return 2e-5;
    case DType::bf16: return 3e-2;
    case DType::fp16: return 5e-3;
  }
  return 0;
}

SanityCase make(std::string name, DType dtype, int64_t seqlen_q, int64_t seqlen_k, int64_t dim) {
  SanityCase c;
  c.name = std::move(name);
  c.dtype = dtype;
  c.seqlen_q = seqlen_q;
  c.seqlen_k = seqlen_k;
  c.dim = c.dim_v = dim;
  return c;
}

std::vector<SanityCase> table() {
  std::vector<SanityCase> rows;
  for (DType dtype : {DType::fp32, DType::bf16, DType::fp16}) {
    const std::string t = to_string(dtype);
    rows.push_back(make(t + "_plain", dtype, 70, 90, 16));
    SanityCase c = make(t + "_causal_gqa", dtype, 90, 70, 24);
    c.causal = true;  // bottom-right: the first 20 rows see no key
    c.heads_q = 4;
    c.heads_kv = 2;
    c.batch = 2;
    rows.push_back(c);
    c = make(t + "_window_dimv", dtype, 67, 131, 40);
    c.window_left = 9;
    c.window_right = 3;
    c.dim_v = 20;
    rows.push_back(c);
    c = make(t + "_softcap_alibi", dtype, 65, 65, 33);
    c.softcap = 1.5f;
    c.alibi = true;
    c.heads_q = 2;
    c.heads_kv = 1;
    rows.push_back(c);
    c = make(t + "_dropout_causal", dtype, 129, 129, 64);
    c.dropout_p = 0.3f;
    c.causal = true;
    rows.push_back(c);
  }
  return rows;
}

class TiledSanity : public ::testing::TestWithParam<SanityCase> {};

TEST_P(TiledSanity, MatchesNaiveAttention) {
  Problem problem(GetParam());
  ASSERT_TRUE(forward(problem.forward_params()).ok());
  ASSERT_TRUE(backward(problem.backward_params()).ok());
  const NaiveResult expected = naive_attention(problem);
  const double tol = tolerance(problem.config.dtype);
  EXPECT_LE(relative_error(problem.out, expected.out), tol);
  EXPECT_LE(relative_error(problem.dq, expected.dq), 2 * tol);
  EXPECT_LE(relative_error(problem.dk, expected.dk), 2 * tol);
  EXPECT_LE(relative_error(problem.dv, expected.dv), 2 * tol);
  for (size_t i = 0; i < expected.lse.size(); ++i) {
    if (std::isinf(expected.lse[i])) {
      EXPECT_TRUE(std::isinf(problem.lse[i]) && problem.lse[i] > 0) << "lse row " << i;
    } else {
      EXPECT_NEAR(problem.lse[i], expected.lse[i], 1e-4 * std::max(1.0, std::abs(expected.lse[i])))
          << "lse row " << i;
    }
  }
  if (problem.config.dropout_p > 0.0f) {
    EXPECT_EQ(problem.dropout_mask, expected.mask);
  }
}

// Forward and backward twice, with 1, 2 and 3 threads: the same bytes every time (every
// output element is computed by one thread in a fixed order).
TEST_P(TiledSanity, BitwiseDeterministicAcrossThreadCounts) {
  Problem problem(GetParam());
  std::vector<unsigned char> first_out, first_dq, first_dk, first_dv;
  for (int threads : {1, 2, 3, 2}) {
    ASSERT_TRUE(forward(problem.forward_params(threads)).ok());
    ASSERT_TRUE(backward(problem.backward_params(threads)).ok());
    if (first_out.empty()) {
      first_out = problem.out.bytes;
      first_dq = problem.dq.bytes;
      first_dk = problem.dk.bytes;
      first_dv = problem.dv.bytes;
      continue;
    }
    EXPECT_EQ(problem.out.bytes, first_out) << threads << " threads";
    EXPECT_EQ(problem.dq.bytes, first_dq) << threads << " threads";
    EXPECT_EQ(problem.dk.bytes, first_dk) << threads << " threads";
    EXPECT_EQ(problem.dv.bytes, first_dv) << threads << " threads";
  }
}

INSTANTIATE_TEST_SUITE_P(Table, TiledSanity, ::testing::ValuesIn(table()),
                         [](const ::testing::TestParamInfo<SanityCase>& info) {
                           return info.param.name;
                         });

// Rows that see no key: out exactly 0, LSE +inf, and no gradient flows through them.
TEST(TiledSanityEdges, RowsThatSeeNoKey) {
  SanityCase c = make("empty_rows", DType::bf16, 100, 30, 32);
  c.causal = true;  // rows 0..69 see nothing
  Problem problem(c);
  ASSERT_TRUE(forward(problem.forward_params()).ok());
  ASSERT_TRUE(backward(problem.backward_params()).ok());
  for (int64_t i = 0; i < 70; ++i) {
    EXPECT_TRUE(std::isinf(problem.lse[i]) && problem.lse[i] > 0) << "row " << i;
    for (int64_t d = 0; d < 32; ++d) {
      EXPECT_EQ(problem.out.read(problem.out.index(0, i, 0, d)), 0.0) << "row " << i;
      EXPECT_EQ(problem.dq.read(problem.dq.index(0, i, 0, d)), 0.0) << "row " << i;
    }
  }
  EXPECT_TRUE(std::isfinite(problem.lse[70]));
}

TEST(TiledSanityEdges, SupportsEveryCpuProblem) {
  Problem problem(make("support", DType::fp16, 3, 5, 7));
  ForwardParams params = problem.forward_params();
  EXPECT_EQ(cpu_tiled::unsupported_reason(params), "");
  EXPECT_EQ(cpu_tiled::unsupported_reason(problem.backward_params()), "");
  params.device = Device::cuda;
  EXPECT_NE(cpu_tiled::unsupported_reason(params), "");
}

// The portable kernels (CPUs without AVX-512) compute what the AVX-512 ones compute.
TEST(TiledKernels, KernelSetsAgree) {
  const cpu_tiled::Kernels* fast = cpu_tiled::avx512_kernels();
  if (fast == nullptr) GTEST_SKIP() << "no AVX-512 on this CPU: only the portable set runs";
  const cpu_tiled::Kernels& portable = cpu_tiled::portable_kernels();
  std::mt19937 engine(3);
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
  struct Shape {
    int64_t m, n, k;
    bool transposed_a, accumulate;
  };
  for (const Shape& s : {Shape{64, 64, 64, false, false}, Shape{7, 83, 13, true, true},
                         Shape{1, 1, 1, false, true}, Shape{13, 130, 5, true, false}}) {
    std::vector<float> a(static_cast<size_t>(s.m * s.k)), b(static_cast<size_t>(s.k * s.n)),
        c0(static_cast<size_t>(s.m * s.n));
    for (float& x : a) x = uniform(engine);
    for (float& x : b) x = uniform(engine);
    for (float& x : c0) x = uniform(engine);
    std::vector<float> c1 = c0;
    const int64_t a_row = s.transposed_a ? 1 : s.k, a_col = s.transposed_a ? s.m : 1;
    portable.gemm(s.m, s.n, s.k, a.data(), a_row, a_col, b.data(), s.n, c0.data(), s.n,
                  s.accumulate);
    fast->gemm(s.m, s.n, s.k, a.data(), a_row, a_col, b.data(), s.n, c1.data(), s.n, s.accumulate);
    for (size_t i = 0; i < c0.size(); ++i) ASSERT_NEAR(c0[i], c1[i], 1e-4f) << "element " << i;
  }
  std::vector<float> x(37);
  for (float& value : x) value = uniform(engine) * 10.0f;
  x[5] = -std::numeric_limits<float>::infinity();
  EXPECT_EQ(portable.row_max(x.data(), 37), fast->row_max(x.data(), 37));
  std::vector<float> y0 = x, y1 = x;
  const float sum0 = portable.exp_shifted(y0.data(), 37, 0.7f, 3.0f);
  const float sum1 = fast->exp_shifted(y1.data(), 37, 0.7f, 3.0f);
  EXPECT_NEAR(sum0, sum1, 1e-5f * sum0);
  EXPECT_EQ(y1[5], 0.0f);
  // The AVX-512 set fuses scale * x - shift into one rounding; arguments up to ~25 in
  // magnitude then differ by an ulp (~2e-6), which exp turns into that relative difference.
  for (size_t i = 0; i < y0.size(); ++i) EXPECT_NEAR(y0[i], y1[i], 4e-6f * y0[i]) << i;
}

}  // namespace
}  // namespace flashattn
