// Argument validation: every rejected argument is named with its expected and actual value,
// the status code says invalid or unsupported, and no output byte is written.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "flashattn/flashattn.h"

namespace flashattn {
namespace {

// The valid base problem: GQA, seqlen_q != seqlen_k, dense contiguous fp32 on the CPU.
constexpr int64_t kBatch = 2;
constexpr int64_t kSeqlenQ = 3;
constexpr int64_t kSeqlenK = 5;
constexpr int64_t kHeadsQ = 4;
constexpr int64_t kHeadsKv = 2;
constexpr int64_t kHeadDim = 8;

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr unsigned char kSentinel = 0xA5;

// Varlen views of the same buffers: two sequences of 3 queries and 5 keys each.
const int32_t kCuSeqlensQ[] = {0, 3, 6};
const int32_t kCuSeqlensK[] = {0, 5, 10};
const float kAlibiSlopes[kBatch * kHeadsQ] = {0.5f, 0.25f, 0.125f, 0.0625f,
                                              0.5f, 0.25f, 0.125f, 0.0625f};

void make_varlen(AttentionArgs& args) {
  args.cu_seqlens_q = kCuSeqlensQ;
  args.cu_seqlens_k = kCuSeqlensK;
  args.total_q = kBatch * kSeqlenQ;
  args.total_k = kBatch * kSeqlenK;
}

// Host buffers of one problem; outputs hold the sentinel pattern until someone writes.
struct Problem {
  int64_t head_dim;
  int64_t head_dim_v;
  std::vector<float> q, k, v, out, dout, lse, dq, dk, dv;
  std::vector<uint8_t> dropout_mask;

  explicit Problem(int64_t dim = kHeadDim, int64_t dim_v = kHeadDim)
      : head_dim(dim),
        head_dim_v(dim_v),
        q(kBatch * kSeqlenQ * kHeadsQ * dim, 1.0f),
        k(kBatch * kSeqlenK * kHeadsKv * dim, 1.0f),
        v(kBatch * kSeqlenK * kHeadsKv * dim_v, 1.0f),
        out(kBatch * kSeqlenQ * kHeadsQ * dim_v),
        dout(out.size(), 1.0f),
        lse(kBatch * kHeadsQ * kSeqlenQ),
        dq(q.size()),
        dk(k.size()),
        dv(v.size()),
        dropout_mask(kBatch * kHeadsQ * kSeqlenQ * kSeqlenK) {
    for (std::vector<float>* output : {&out, &lse, &dq, &dk, &dv}) fill_sentinel(*output);
    fill_sentinel(dropout_mask);
  }

  template <typename T>
  static void fill_sentinel(std::vector<T>& buffer) {
    std::memset(buffer.data(), kSentinel, buffer.size() * sizeof(T));
  }

  template <typename T>
  static bool holds_sentinel(const std::vector<T>& buffer) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(buffer.data());
    for (size_t i = 0; i < buffer.size() * sizeof(T); ++i) {
      if (bytes[i] != kSentinel) return false;
    }
    return true;
  }

  static TensorRef dense(std::vector<float>& buffer, int64_t seqlen, int64_t heads, int64_t dim) {
    TensorRef tensor;
    tensor.data = buffer.data();
    tensor.head_stride = dim;
    tensor.row_stride = heads * dim;
    tensor.batch_stride = seqlen * heads * dim;
    return tensor;
  }

  void fill_args(AttentionArgs& args) {
    args.device = Device::cpu;
    args.dtype = DType::fp32;
    args.batch = kBatch;
    args.seqlen_q = kSeqlenQ;
    args.seqlen_k = kSeqlenK;
    args.heads_q = kHeadsQ;
    args.heads_kv = kHeadsKv;
    args.head_dim = head_dim;
    args.head_dim_v = head_dim_v == head_dim ? 0 : head_dim_v;
    args.q = dense(q, kSeqlenQ, kHeadsQ, head_dim);
    args.k = dense(k, kSeqlenK, kHeadsKv, head_dim);
    args.v = dense(v, kSeqlenK, kHeadsKv, head_dim_v);
  }

  ForwardParams forward_params() {
    ForwardParams params;
    fill_args(params);
    params.out = dense(out, kSeqlenQ, kHeadsQ, head_dim_v);
    params.lse.data = lse.data();
    params.dropout_mask = dropout_mask.data();
    return params;
  }

  BackwardParams backward_params() {
    BackwardParams params;
    fill_args(params);
    params.out = dense(out, kSeqlenQ, kHeadsQ, head_dim_v);
    params.dout = dense(dout, kSeqlenQ, kHeadsQ, head_dim_v);
    params.lse.data = lse.data();
    params.dq = dense(dq, kSeqlenQ, kHeadsQ, head_dim);
    params.dk = dense(dk, kSeqlenK, kHeadsKv, head_dim);
    params.dv = dense(dv, kSeqlenK, kHeadsKv, head_dim_v);
    return params;
  }

  bool forward_outputs_untouched() const {
    return holds_sentinel(out) && holds_sentinel(lse) && holds_sentinel(dropout_mask);
  }
  bool backward_outputs_untouched() const {
    return holds_sentinel(dq) && holds_sentinel(dk) && holds_sentinel(dv);
  }
};

// One rejected call: a mutation of the valid base params and the exact answer.
template <typename Params>
struct RejectCase {
  const char* name;
  void (*mutate)(Params&);
  StatusCode code;
  const char* message;
};

// gtest prints rows by their name instead of their bytes.
template <typename Params>
void PrintTo(const RejectCase<Params>& row, std::ostream* os) {
  *os << row.name;
}

template <typename Params>
std::string case_name(const testing::TestParamInfo<RejectCase<Params>>& info) {
  return info.param.name;
}

void expect_status(const Status& status, StatusCode code, const std::string& message) {
  EXPECT_EQ(to_string(status.code()), std::string(to_string(code)));
  EXPECT_EQ(status.message(), message);
}

// Shared arguments: every row runs through forward and backward alike.
using SharedCase = RejectCase<AttentionArgs>;

const SharedCase kSharedCases[] = {
    // Required pointers.
    {"q_null", [](AttentionArgs& a) { a.q.data = nullptr; }, StatusCode::invalid_argument,
     "q: expected data for shape [2, 3, 4, 8], got null"},
    {"k_null", [](AttentionArgs& a) { a.k.data = nullptr; }, StatusCode::invalid_argument,
     "k: expected data for shape [2, 5, 2, 8], got null"},
    {"v_null", [](AttentionArgs& a) { a.v.data = nullptr; }, StatusCode::invalid_argument,
     "v: expected data for shape [2, 5, 2, 8], got null"},
    {"v_null_shape_follows_head_dim_v",
     [](AttentionArgs& a) {
       a.head_dim_v = 16;
       a.v.data = nullptr;
     },
     StatusCode::invalid_argument, "v: expected data for shape [2, 5, 2, 16], got null"},
    {"varlen_q_null_packed_shape",
     [](AttentionArgs& a) {
       make_varlen(a);
       a.q.data = nullptr;
     },
     StatusCode::invalid_argument, "q: expected data for shape [6, 4, 8], got null"},
    // Sizes.
    {"batch_negative", [](AttentionArgs& a) { a.batch = -1; }, StatusCode::invalid_argument,
     "batch: expected >= 0, got -1"},
    {"seqlen_q_negative", [](AttentionArgs& a) { a.seqlen_q = -3; }, StatusCode::invalid_argument,
     "seqlen_q: expected >= 0, got -3"},
    {"seqlen_k_negative", [](AttentionArgs& a) { a.seqlen_k = -5; }, StatusCode::invalid_argument,
     "seqlen_k: expected >= 0, got -5"},
    {"heads_q_negative", [](AttentionArgs& a) { a.heads_q = -4; }, StatusCode::invalid_argument,
     "heads_q: expected >= 0, got -4"},
    {"heads_kv_zero", [](AttentionArgs& a) { a.heads_kv = 0; }, StatusCode::invalid_argument,
     "heads_kv: expected >= 1, got 0"},
    {"heads_kv_negative", [](AttentionArgs& a) { a.heads_kv = -2; }, StatusCode::invalid_argument,
     "heads_kv: expected >= 1, got -2"},
    {"heads_kv_not_dividing",
     [](AttentionArgs& a) {
       a.heads_q = 32;
       a.heads_kv = 6;
     },
     StatusCode::invalid_argument, "k: heads 6 does not divide q heads 32"},
    {"head_dim_zero", [](AttentionArgs& a) { a.head_dim = 0; }, StatusCode::invalid_argument,
     "head_dim: expected 1..256, got 0"},
    {"head_dim_300", [](AttentionArgs& a) { a.head_dim = 300; }, StatusCode::invalid_argument,
     "head_dim: expected 1..256, got 300"},
    {"head_dim_v_257", [](AttentionArgs& a) { a.head_dim_v = 257; }, StatusCode::invalid_argument,
     "head_dim_v: expected 1..256 (or 0 for head_dim), got 257"},
    {"head_dim_v_negative", [](AttentionArgs& a) { a.head_dim_v = -1; },
     StatusCode::invalid_argument, "head_dim_v: expected 1..256 (or 0 for head_dim), got -1"},
    {"q_elements_overflow", [](AttentionArgs& a) { a.seqlen_q = int64_t{1} << 60; },
     StatusCode::invalid_argument,
     "q: shape [2, 1152921504606846976, 4, 8] has more elements than int64 can count"},
    // Enums and what the device can run.
    {"dtype_out_of_range", [](AttentionArgs& a) { a.dtype = static_cast<DType>(7); },
     StatusCode::invalid_argument, "dtype: expected fp16, bf16 or fp32, got 7"},
    {"device_out_of_range", [](AttentionArgs& a) { a.device = static_cast<Device>(-1); },
     StatusCode::invalid_argument, "device: expected cpu or cuda, got -1"},
    {"backend_out_of_range", [](AttentionArgs& a) { a.backend = static_cast<Backend>(9); },
     StatusCode::invalid_argument,
     "backend: expected automatic, cpu_reference, cpu_tiled, cuda_sm80 or cuda_sm90, got 9"},
    {"fp32_on_cuda", [](AttentionArgs& a) { a.device = Device::cuda; }, StatusCode::unsupported,
     "dtype: expected fp16 or bf16 on device cuda (fp32 runs on cpu), got fp32"},
    {"cpu_tiled_on_cuda",
     [](AttentionArgs& a) {
       a.device = Device::cuda;
       a.dtype = DType::fp16;
       a.backend = Backend::cpu_tiled;
     },
     StatusCode::unsupported, "backend: cpu_tiled cannot run on device cuda"},
    {"cpu_reference_on_cuda",
     [](AttentionArgs& a) {
       a.device = Device::cuda;
       a.dtype = DType::bf16;
       a.backend = Backend::cpu_reference;
     },
     StatusCode::unsupported, "backend: cpu_reference cannot run on device cuda"},
    {"cuda_sm80_on_cpu", [](AttentionArgs& a) { a.backend = Backend::cuda_sm80; },
     StatusCode::unsupported, "backend: cuda_sm80 cannot run on device cpu"},
    {"cuda_sm90_on_cpu", [](AttentionArgs& a) { a.backend = Backend::cuda_sm90; },
     StatusCode::unsupported, "backend: cuda_sm90 cannot run on device cpu"},
    {"invalid_before_unsupported",
     [](AttentionArgs& a) {
       a.device = Device::cuda;
       a.head_dim = 300;
     },
     StatusCode::invalid_argument, "head_dim: expected 1..256, got 300"},
    // Strides.
    {"q_dim_stride_2", [](AttentionArgs& a) { a.q.dim_stride = 2; }, StatusCode::invalid_argument,
     "q: last-dimension stride must be 1, got 2"},
    {"k_dim_stride_0", [](AttentionArgs& a) { a.k.dim_stride = 0; }, StatusCode::invalid_argument,
     "k: last-dimension stride must be 1, got 0"},
    {"v_dim_stride_negative", [](AttentionArgs& a) { a.v.dim_stride = -1; },
     StatusCode::invalid_argument, "v: last-dimension stride must be 1, got -1"},
    {"q_row_stride_negative", [](AttentionArgs& a) { a.q.row_stride = -32; },
     StatusCode::invalid_argument, "q: row_stride must be >= 0, got -32"},
    {"k_batch_stride_negative", [](AttentionArgs& a) { a.k.batch_stride = -1; },
     StatusCode::invalid_argument, "k: batch_stride must be >= 0, got -1"},
    {"v_head_stride_negative", [](AttentionArgs& a) { a.v.head_stride = -8; },
     StatusCode::invalid_argument, "v: head_stride must be >= 0, got -8"},
    {"q_offset_overflows_elements", [](AttentionArgs& a) { a.q.batch_stride = kInt64Max; },
     StatusCode::invalid_argument,
     "q: largest offset overflows int64 for shape [2, 3, 4, 8] with strides "
     "[9223372036854775807, 32, 8, 1]"},
    {"k_offset_overflows_bytes", [](AttentionArgs& a) { a.k.row_stride = kInt64Max / 8; },
     StatusCode::invalid_argument,
     "k: largest offset overflows int64 for shape [2, 5, 2, 8] with strides "
     "[80, 1152921504606846975, 8, 1]"},
    // Varlen.
    {"cu_seqlens_k_missing", [](AttentionArgs& a) { a.cu_seqlens_q = kCuSeqlensQ; },
     StatusCode::invalid_argument,
     "cu_seqlens_k: expected set together with cu_seqlens_q (varlen), got null"},
    {"cu_seqlens_q_missing", [](AttentionArgs& a) { a.cu_seqlens_k = kCuSeqlensK; },
     StatusCode::invalid_argument,
     "cu_seqlens_q: expected set together with cu_seqlens_k (varlen), got null"},
    {"total_q_negative",
     [](AttentionArgs& a) {
       make_varlen(a);
       a.total_q = -1;
     },
     StatusCode::invalid_argument, "total_q: expected >= 0, got -1"},
    {"total_k_beyond_batch_times_seqlen_k",
     [](AttentionArgs& a) {
       make_varlen(a);
       a.total_k = 11;
     },
     StatusCode::invalid_argument, "total_k: expected at most batch * seqlen_k = 10, got 11"},
    {"total_q_mismatch",
     [](AttentionArgs& a) {
       make_varlen(a);
       a.total_q = 5;
     },
     StatusCode::invalid_argument, "total_q: expected cu_seqlens_q[batch] = 6, got 5"},
    {"total_k_mismatch",
     [](AttentionArgs& a) {
       make_varlen(a);
       a.total_k = 9;
     },
     StatusCode::invalid_argument, "total_k: expected cu_seqlens_k[batch] = 10, got 9"},
    {"cu_seqlens_q_not_from_zero",
     [](AttentionArgs& a) {
       static const int32_t cu[] = {1, 3, 6};
       make_varlen(a);
       a.cu_seqlens_q = cu;
     },
     StatusCode::invalid_argument, "cu_seqlens_q: expected cu_seqlens_q[0] = 0, got 1"},
    {"cu_seqlens_q_decreasing",
     [](AttentionArgs& a) {
       static const int32_t cu[] = {0, 3, 2};
       make_varlen(a);
       a.cu_seqlens_q = cu;
       a.total_q = 2;
     },
     StatusCode::invalid_argument,
     "cu_seqlens_q: expected non-decreasing values, got cu_seqlens_q[2] = 2 after "
     "cu_seqlens_q[1] = 3"},
    {"cu_seqlens_k_sequence_too_long",
     [](AttentionArgs& a) {
       static const int32_t cu[] = {0, 6, 10};
       make_varlen(a);
       a.cu_seqlens_k = cu;
     },
     StatusCode::invalid_argument,
     "cu_seqlens_k: sequence 0 has 6 tokens, expected at most seqlen_k = 5"},
    {"cuda_total_q_beyond_int32",
     [](AttentionArgs& a) {
       make_varlen(a);
       a.device = Device::cuda;
       a.dtype = DType::fp16;
       a.total_q = int64_t{1} << 32;
     },
     StatusCode::invalid_argument,
     "total_q: expected at most 2147483647 (cu_seqlens_q is int32), got 4294967296"},
    {"cuda_total_k_beyond_batch_times_seqlen_k",
     [](AttentionArgs& a) {
       make_varlen(a);
       a.device = Device::cuda;
       a.dtype = DType::bf16;
       a.total_k = 12;
     },
     StatusCode::invalid_argument, "total_k: expected at most batch * seqlen_k = 10, got 12"},
    {"seqused_k_beyond_seqlen_k",
     [](AttentionArgs& a) {
       static const int32_t used[] = {5, 6};
       a.seqused_k = used;
     },
     StatusCode::invalid_argument, "seqused_k: expected seqused_k[1] in [0, 5], got 6"},
    {"seqused_k_negative",
     [](AttentionArgs& a) {
       static const int32_t used[] = {-1, 0};
       a.seqused_k = used;
     },
     StatusCode::invalid_argument, "seqused_k: expected seqused_k[0] in [0, 5], got -1"},
    {"seqused_k_beyond_varlen_sequence",
     [](AttentionArgs& a) {
       static const int32_t cu[] = {0, 5, 7};
       static const int32_t used[] = {4, 3};
       make_varlen(a);
       a.cu_seqlens_k = cu;
       a.total_k = 7;
       a.seqused_k = used;
     },
     StatusCode::invalid_argument, "seqused_k: expected seqused_k[1] in [0, 2], got 3"},
    // Options.
    {"dropout_p_1_5", [](AttentionArgs& a) { a.dropout_p = 1.5f; }, StatusCode::invalid_argument,
     "dropout_p: expected a value in [0, 1), got 1.5"},
    {"dropout_p_one", [](AttentionArgs& a) { a.dropout_p = 1.0f; }, StatusCode::invalid_argument,
     "dropout_p: expected a value in [0, 1), got 1"},
    {"dropout_p_negative", [](AttentionArgs& a) { a.dropout_p = -0.25f; },
     StatusCode::invalid_argument, "dropout_p: expected a value in [0, 1), got -0.25"},
    {"dropout_p_nan", [](AttentionArgs& a) { a.dropout_p = kNaN; }, StatusCode::invalid_argument,
     "dropout_p: expected a value in [0, 1), got nan"},
    {"softmax_scale_inf", [](AttentionArgs& a) { a.softmax_scale = kInf; },
     StatusCode::invalid_argument,
     "softmax_scale: expected a finite value (or NaN for 1/sqrt(head_dim)), got inf"},
    {"softmax_scale_minus_inf", [](AttentionArgs& a) { a.softmax_scale = -kInf; },
     StatusCode::invalid_argument,
     "softmax_scale: expected a finite value (or NaN for 1/sqrt(head_dim)), got -inf"},
    {"window_left_below_minus_one", [](AttentionArgs& a) { a.window_left = -2; },
     StatusCode::invalid_argument, "window_left: expected -1 (unbounded) or >= 0, got -2"},
    {"window_right_below_minus_one", [](AttentionArgs& a) { a.window_right = -5; },
     StatusCode::invalid_argument, "window_right: expected -1 (unbounded) or >= 0, got -5"},
    {"softcap_negative", [](AttentionArgs& a) { a.softcap = -1.0f; }, StatusCode::invalid_argument,
     "softcap: expected a finite value >= 0 (0 disables it), got -1"},
    {"softcap_nan", [](AttentionArgs& a) { a.softcap = kNaN; }, StatusCode::invalid_argument,
     "softcap: expected a finite value >= 0 (0 disables it), got nan"},
    {"softcap_inf", [](AttentionArgs& a) { a.softcap = kInf; }, StatusCode::invalid_argument,
     "softcap: expected a finite value >= 0 (0 disables it), got inf"},
    {"alibi_batch_stride_negative",
     [](AttentionArgs& a) {
       a.alibi_slopes = kAlibiSlopes;
       a.alibi_batch_stride = -1;
     },
     StatusCode::invalid_argument, "alibi_batch_stride: expected >= 0, got -1"},
    {"alibi_batch_stride_below_heads_q",
     [](AttentionArgs& a) {
       a.alibi_slopes = kAlibiSlopes;
       a.alibi_batch_stride = 2;
     },
     StatusCode::invalid_argument,
     "alibi_batch_stride: expected 0 (slopes [heads_q]) or >= heads_q = 4, got 2"},
    {"alibi_batch_stride_overflows",
     [](AttentionArgs& a) {
       a.alibi_slopes = kAlibiSlopes;
       a.alibi_batch_stride = kInt64Max;
     },
     StatusCode::invalid_argument,
     "alibi_batch_stride: largest offset overflows int64 for batch 2 with stride "
     "9223372036854775807"},
    {"num_threads_negative", [](AttentionArgs& a) { a.num_threads = -1; },
     StatusCode::invalid_argument, "num_threads: expected >= 0 (0 for the OpenMP default), got -1"},
};

class SharedRejection : public testing::TestWithParam<SharedCase> {};

TEST_P(SharedRejection, ForwardNamesArgumentAndWritesNothing) {
  const SharedCase& row = GetParam();
  Problem problem;
  ForwardParams params = problem.forward_params();
  row.mutate(params);
  expect_status(validate(params), row.code, row.message);
  expect_status(forward(params), row.code, row.message);
  EXPECT_TRUE(problem.forward_outputs_untouched());
}

TEST_P(SharedRejection, BackwardNamesArgumentAndWritesNothing) {
  const SharedCase& row = GetParam();
  Problem problem;
  BackwardParams params = problem.backward_params();
  row.mutate(params);
  expect_status(validate(params), row.code, row.message);
  expect_status(backward(params), row.code, row.message);
  EXPECT_TRUE(problem.backward_outputs_untouched());
}

INSTANTIATE_TEST_SUITE_P(validation, SharedRejection, testing::ValuesIn(kSharedCases),
                         case_name<AttentionArgs>);

// Forward-only operands: out, the optional LSE, the optional dropout mask.
using ForwardCase = RejectCase<ForwardParams>;

const ForwardCase kForwardCases[] = {
    {"out_null", [](ForwardParams& p) { p.out.data = nullptr; }, StatusCode::invalid_argument,
     "out: expected data for shape [2, 3, 4, 8], got null"},
    {"out_null_shape_follows_head_dim_v",
     [](ForwardParams& p) {
       p.head_dim_v = 16;
       p.out.data = nullptr;
     },
     StatusCode::invalid_argument, "out: expected data for shape [2, 3, 4, 16], got null"},
    {"out_dim_stride_2", [](ForwardParams& p) { p.out.dim_stride = 2; },
     StatusCode::invalid_argument, "out: last-dimension stride must be 1, got 2"},
    {"out_head_stride_negative", [](ForwardParams& p) { p.out.head_stride = -8; },
     StatusCode::invalid_argument, "out: head_stride must be >= 0, got -8"},
    {"out_batches_overlap", [](ForwardParams& p) { p.out.batch_stride = 0; },
     StatusCode::invalid_argument,
     "out: expected non-overlapping strides for shape [2, 3, 4, 8], got [0, 32, 8, 1]"},
    {"out_heads_overlap", [](ForwardParams& p) { p.out.head_stride = 4; },
     StatusCode::invalid_argument,
     "out: expected non-overlapping strides for shape [2, 3, 4, 8], got [96, 32, 4, 1]"},
    {"lse_head_stride_negative", [](ForwardParams& p) { p.lse.head_stride = -1; },
     StatusCode::invalid_argument, "lse: head_stride must be >= 0, got -1"},
    {"lse_batches_overlap",
     [](ForwardParams& p) {
       p.lse.batch_stride = 0;
       p.lse.head_stride = 3;
     },
     StatusCode::invalid_argument,
     "lse: expected non-overlapping strides for shape [2, 4, 3], got [0, 3, 1]"},
    {"lse_offset_overflows",
     [](ForwardParams& p) {
       p.lse.batch_stride = kInt64Max / 2;
       p.lse.head_stride = 3;
     },
     StatusCode::invalid_argument,
     "lse: largest offset overflows int64 for shape [2, 4, 3] with strides "
     "[4611686018427387903, 3, 1]"},
    {"dropout_mask_elements_overflow",
     [](ForwardParams& p) {
       p.seqlen_q = int64_t{1} << 30;
       p.seqlen_k = int64_t{1} << 30;
       p.q.batch_stride = p.out.batch_stride = int64_t{1} << 36;
       p.k.batch_stride = p.v.batch_stride = int64_t{1} << 36;
       p.lse.data = nullptr;
     },
     StatusCode::invalid_argument,
     "dropout_mask: shape [2, 4, 1073741824, 1073741824] has more elements than int64 can "
     "count"},
};

class ForwardRejection : public testing::TestWithParam<ForwardCase> {};

TEST_P(ForwardRejection, NamesArgumentAndWritesNothing) {
  const ForwardCase& row = GetParam();
  Problem problem;
  ForwardParams params = problem.forward_params();
  row.mutate(params);
  expect_status(validate(params), row.code, row.message);
  expect_status(forward(params), row.code, row.message);
  EXPECT_TRUE(problem.forward_outputs_untouched());
}

INSTANTIATE_TEST_SUITE_P(validation, ForwardRejection, testing::ValuesIn(kForwardCases),
                         case_name<ForwardParams>);

// Backward-only operands: out, dout, lse (required), dq, dk, dv, workspace.
using BackwardCase = RejectCase<BackwardParams>;

const BackwardCase kBackwardCases[] = {
    {"out_null", [](BackwardParams& p) { p.out.data = nullptr; }, StatusCode::invalid_argument,
     "out: expected data for shape [2, 3, 4, 8], got null"},
    {"dout_null", [](BackwardParams& p) { p.dout.data = nullptr; }, StatusCode::invalid_argument,
     "dout: expected data for shape [2, 3, 4, 8], got null"},
    {"dout_null_shape_follows_head_dim_v",
     [](BackwardParams& p) {
       p.head_dim_v = 32;
       p.dout.data = nullptr;
     },
     StatusCode::invalid_argument, "dout: expected data for shape [2, 3, 4, 32], got null"},
    {"lse_null", [](BackwardParams& p) { p.lse.data = nullptr; }, StatusCode::invalid_argument,
     "lse: expected data for shape [2, 4, 3], got null"},
    {"lse_null_varlen_shape",
     [](BackwardParams& p) {
       make_varlen(p);
       p.lse.data = nullptr;
     },
     StatusCode::invalid_argument, "lse: expected data for shape [4, 6], got null"},
    {"lse_batch_stride_negative", [](BackwardParams& p) { p.lse.batch_stride = -3; },
     StatusCode::invalid_argument, "lse: batch_stride must be >= 0, got -3"},
    {"dq_null", [](BackwardParams& p) { p.dq.data = nullptr; }, StatusCode::invalid_argument,
     "dq: expected data for shape [2, 3, 4, 8], got null"},
    {"dk_null", [](BackwardParams& p) { p.dk.data = nullptr; }, StatusCode::invalid_argument,
     "dk: expected data for shape [2, 5, 2, 8], got null"},
    {"dv_null_shape_follows_head_dim_v",
     [](BackwardParams& p) {
       p.head_dim_v = 16;
       p.dv.data = nullptr;
     },
     StatusCode::invalid_argument, "dv: expected data for shape [2, 5, 2, 16], got null"},
    {"dout_dim_stride_2", [](BackwardParams& p) { p.dout.dim_stride = 2; },
     StatusCode::invalid_argument, "dout: last-dimension stride must be 1, got 2"},
    {"dk_row_stride_negative", [](BackwardParams& p) { p.dk.row_stride = -16; },
     StatusCode::invalid_argument, "dk: row_stride must be >= 0, got -16"},
    {"dq_heads_overlap", [](BackwardParams& p) { p.dq.head_stride = 0; },
     StatusCode::invalid_argument,
     "dq: expected non-overlapping strides for shape [2, 3, 4, 8], got [96, 32, 0, 1]"},
    {"dv_rows_overlap", [](BackwardParams& p) { p.dv.row_stride = 8; },
     StatusCode::invalid_argument,
     "dv: expected non-overlapping strides for shape [2, 5, 2, 8], got [80, 8, 8, 1]"},
    {"workspace_without_size",
     [](BackwardParams& p) {
       static unsigned char scratch[16];
       p.workspace = scratch;
       p.workspace_bytes = 0;
     },
     StatusCode::invalid_argument,
     "workspace: expected workspace_bytes > 0 with a non-null workspace, got 0"},
};

class BackwardRejection : public testing::TestWithParam<BackwardCase> {};

TEST_P(BackwardRejection, NamesArgumentAndWritesNothing) {
  const BackwardCase& row = GetParam();
  Problem problem;
  BackwardParams params = problem.backward_params();
  row.mutate(params);
  expect_status(validate(params), row.code, row.message);
  expect_status(backward(params), row.code, row.message);
  EXPECT_TRUE(problem.backward_outputs_untouched());
}

INSTANTIATE_TEST_SUITE_P(validation, BackwardRejection, testing::ValuesIn(kBackwardCases),
                         case_name<BackwardParams>);

// Accepted calls, checked through flashattn::validate alone (no backend runs). `empty`
// says which operands have no elements in the mutated problem; their data is then set to
// null, which must be accepted.
enum class Empty { none, query_side, key_side, all };

struct AcceptCase {
  const char* name;
  void (*mutate)(AttentionArgs&);
  Empty empty;
};

void PrintTo(const AcceptCase& row, std::ostream* os) {
  *os << row.name;
}

std::string accept_name(const testing::TestParamInfo<AcceptCase>& info) {
  return info.param.name;
}

const AcceptCase kAcceptCases[] = {
    {"base", [](AttentionArgs&) {}, Empty::none},
    {"batch_zero_null_data", [](AttentionArgs& a) { a.batch = 0; }, Empty::all},
    {"seqlen_q_zero_null_query_side", [](AttentionArgs& a) { a.seqlen_q = 0; }, Empty::query_side},
    {"seqlen_k_zero_null_key_side", [](AttentionArgs& a) { a.seqlen_k = 0; }, Empty::key_side},
    {"both_seqlens_zero_null_data",
     [](AttentionArgs& a) {
       a.seqlen_q = 0;
       a.seqlen_k = 0;
     },
     Empty::all},
    {"heads_q_zero_null_query_side", [](AttentionArgs& a) { a.heads_q = 0; }, Empty::query_side},
    {"varlen", [](AttentionArgs& a) { make_varlen(a); }, Empty::none},
    {"varlen_batch_zero_null_data",
     [](AttentionArgs& a) {
       static const int32_t cu[] = {0};
       a.batch = 0;
       a.cu_seqlens_q = cu;
       a.cu_seqlens_k = cu;
       a.total_q = 0;
       a.total_k = 0;
     },
     Empty::all},
    {"varlen_empty_and_short_sequences",
     [](AttentionArgs& a) {
       static const int32_t cu_q[] = {0, 0, 2};
       static const int32_t cu_k[] = {0, 5, 5};
       make_varlen(a);
       a.cu_seqlens_q = cu_q;
       a.cu_seqlens_k = cu_k;
       a.total_q = 2;
       a.total_k = 5;
     },
     Empty::none},
    {"varlen_ignores_batch_stride",
     [](AttentionArgs& a) {
       make_varlen(a);
       a.q.batch_stride = -1;
       a.k.batch_stride = kInt64Max;
     },
     Empty::none},
    {"cuda_varlen_contents_not_read_on_host",
     [](AttentionArgs& a) {
       static const int32_t garbage[] = {7, -3, 99};
       make_varlen(a);
       a.device = Device::cuda;
       a.dtype = DType::fp16;
       a.cu_seqlens_q = garbage;
       a.cu_seqlens_k = garbage;
       a.seqused_k = garbage;
     },
     Empty::none},
    {"seqused_k_in_range",
     [](AttentionArgs& a) {
       static const int32_t used[] = {0, 5};
       a.seqused_k = used;
     },
     Empty::none},
    {"seqused_k_varlen_in_range",
     [](AttentionArgs& a) {
       static const int32_t used[] = {5, 2};
       make_varlen(a);
       a.seqused_k = used;
     },
     Empty::none},
    {"gqa_single_kv_head", [](AttentionArgs& a) { a.heads_kv = 1; }, Empty::none},
    {"head_dim_1", [](AttentionArgs& a) { a.head_dim = 1; }, Empty::none},
    {"softmax_scale_negative", [](AttentionArgs& a) { a.softmax_scale = -0.5f; }, Empty::none},
    {"softmax_scale_zero", [](AttentionArgs& a) { a.softmax_scale = 0.0f; }, Empty::none},
    {"causal_with_window",
     [](AttentionArgs& a) {
       a.causal = true;
       a.window_left = 0;
     },
     Empty::none},
    {"window_zero_zero",
     [](AttentionArgs& a) {
       a.window_left = 0;
       a.window_right = 0;
     },
     Empty::none},
    {"softcap_positive", [](AttentionArgs& a) { a.softcap = 30.0f; }, Empty::none},
    {"dropout_just_below_one", [](AttentionArgs& a) { a.dropout_p = 0.999f; }, Empty::none},
    {"alibi_per_head", [](AttentionArgs& a) { a.alibi_slopes = kAlibiSlopes; }, Empty::none},
    {"alibi_per_batch_and_head",
     [](AttentionArgs& a) {
       a.alibi_slopes = kAlibiSlopes;
       a.alibi_batch_stride = kHeadsQ;
     },
     Empty::none},
    {"alibi_stride_ignored_without_slopes", [](AttentionArgs& a) { a.alibi_batch_stride = -7; },
     Empty::none},
    {"inputs_broadcast_over_batch",
     [](AttentionArgs& a) {
       a.k.batch_stride = 0;
       a.v.batch_stride = 0;
     },
     Empty::none},
    {"query_heads_major_layout",
     [](AttentionArgs& a) {
       a.q.head_stride = kSeqlenQ * kHeadDim;
       a.q.row_stride = kHeadDim;
     },
     Empty::none},
    {"fp16_on_cpu_reference",
     [](AttentionArgs& a) {
       a.dtype = DType::fp16;
       a.backend = Backend::cpu_reference;
     },
     Empty::none},
    {"bf16_on_cuda_sm80",
     [](AttentionArgs& a) {
       a.device = Device::cuda;
       a.dtype = DType::bf16;
       a.backend = Backend::cuda_sm80;
     },
     Empty::none},
};

void clear_empty_data(AttentionArgs& args, TensorRef* query_side_outputs[], int query_count,
                      TensorRef* key_side_outputs[], int key_count, Empty empty) {
  if (empty == Empty::query_side || empty == Empty::all) {
    args.q.data = nullptr;
    for (int i = 0; i < query_count; ++i) query_side_outputs[i]->data = nullptr;
  }
  if (empty == Empty::key_side || empty == Empty::all) {
    args.k.data = nullptr;
    args.v.data = nullptr;
    for (int i = 0; i < key_count; ++i) key_side_outputs[i]->data = nullptr;
  }
}

class Acceptance : public testing::TestWithParam<AcceptCase> {};

TEST_P(Acceptance, ForwardIsValid) {
  const AcceptCase& row = GetParam();
  Problem problem;
  ForwardParams params = problem.forward_params();
  row.mutate(params);
  TensorRef* query_side[] = {&params.out};
  clear_empty_data(params, query_side, 1, nullptr, 0, row.empty);
  if (row.empty == Empty::query_side || row.empty == Empty::all) {
    params.lse.data = nullptr;
    params.dropout_mask = nullptr;
  }
  const Status status = validate(params);
  EXPECT_TRUE(status.ok()) << to_string(status.code()) << ": " << status.message();
  EXPECT_TRUE(problem.forward_outputs_untouched());
}

TEST_P(Acceptance, BackwardIsValid) {
  const AcceptCase& row = GetParam();
  Problem problem;
  BackwardParams params = problem.backward_params();
  row.mutate(params);
  TensorRef* query_side[] = {&params.out, &params.dout, &params.dq};
  TensorRef* key_side[] = {&params.dk, &params.dv};
  clear_empty_data(params, query_side, 3, key_side, 2, row.empty);
  if (row.empty == Empty::query_side || row.empty == Empty::all) params.lse.data = nullptr;
  const Status status = validate(params);
  EXPECT_TRUE(status.ok()) << to_string(status.code()) << ": " << status.message();
  EXPECT_TRUE(problem.backward_outputs_untouched());
}

INSTANTIATE_TEST_SUITE_P(validation, Acceptance, testing::ValuesIn(kAcceptCases), accept_name);

// The ends of the head_dim range, with strides that match (the shapes follow the dims).
TEST(validation, AcceptsEveryHeadDimRangeEnd) {
  const int64_t dims[][2] = {{256, 256}, {1, 1}, {64, 256}, {256, 1}};
  for (const auto& [dim, dim_v] : dims) {
    Problem problem(dim, dim_v);
    const ForwardParams forward_params = problem.forward_params();
    const BackwardParams backward_params = problem.backward_params();
    EXPECT_TRUE(validate(forward_params).ok())
        << dim << "/" << dim_v << ": " << validate(forward_params).message();
    EXPECT_TRUE(validate(backward_params).ok())
        << dim << "/" << dim_v << ": " << validate(backward_params).message();
  }
}

// Options that only one direction has.
TEST(validation, ForwardAcceptsMissingLseAndMask) {
  Problem problem;
  ForwardParams params = problem.forward_params();
  params.lse.data = nullptr;
  params.lse.head_stride = -1;  // ignored: no LSE requested
  params.dropout_mask = nullptr;
  EXPECT_TRUE(validate(params).ok()) << validate(params).message();
}

TEST(validation, ForwardAcceptsExplicitLseStrides) {
  Problem problem;
  ForwardParams params = problem.forward_params();
  params.lse.head_stride = kSeqlenQ;
  params.lse.batch_stride = kHeadsQ * kSeqlenQ;
  EXPECT_TRUE(validate(params).ok()) << validate(params).message();
}

TEST(validation, BackwardAcceptsWorkspaceChoices) {
  Problem problem;
  BackwardParams params = problem.backward_params();
  params.deterministic = true;
  params.workspace = nullptr;
  params.workspace_bytes = 64;  // ignored: the library allocates
  EXPECT_TRUE(validate(params).ok()) << validate(params).message();
  static unsigned char scratch[64];
  params.workspace = scratch;
  EXPECT_TRUE(validate(params).ok()) << validate(params).message();
}

TEST(validation, BackwardReadsBroadcastOut) {
  Problem problem;
  BackwardParams params = problem.backward_params();
  params.out.batch_stride = 0;  // out is read in backward: sharing is fine
  EXPECT_TRUE(validate(params).ok()) << validate(params).message();
}

}  // namespace
}  // namespace flashattn
