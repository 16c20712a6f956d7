// The cuda_sm80 forward against the fp64 oracle: a table of cases (every tile width, feature
// and layout), a tensor of more than 2^31 elements, and the device-side argument checks.
// Every test skips (with a message) when no CUDA device is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/element.h"
#include "cpu/reference/reference.h"
#include "flashattn/flashattn.h"
#include "support/attention_case.h"
#include "support/case_builders.h"
#include "support/checks.h"
#include "support/host_problem.h"

namespace flashattn::testing {
namespace {

#define SKIP_WITHOUT_GPU()                                                      \
  do {                                                                          \
    if (!flashattn::cuda_available()) GTEST_SKIP() << "no CUDA device present"; \
  } while (0)

#define CUDA_ASSERT(call)                                                          \
  do {                                                                             \
    const cudaError_t error_ = (call);                                             \
    ASSERT_EQ(error_, cudaSuccess) << #call << ": " << cudaGetErrorString(error_); \
  } while (0)

// Device copies of every buffer of a HostProblem (inputs and the poisoned outputs).
class DeviceMirror {
 public:
  explicit DeviceMirror(HostProblem& problem) : problem_(problem) {
    for (int id = 0; id < kBufferCount; ++id) {
      const std::span<std::byte> host = problem.bytes(static_cast<BufferId>(id));
      if (host.empty()) continue;
      if (cudaMalloc(&device_[id], host.size()) != cudaSuccess) {
        device_[id] = nullptr;
        ok_ = false;
        continue;
      }
      ok_ = ok_ && cudaMemcpy(device_[id], host.data(), host.size(), cudaMemcpyHostToDevice) ==
                       cudaSuccess;
    }
  }
  ~DeviceMirror() {
    for (void* pointer : device_) cudaFree(pointer);
  }
  DeviceMirror(const DeviceMirror&) = delete;
  DeviceMirror& operator=(const DeviceMirror&) = delete;

  bool ok() const { return ok_; }
  const BufferPointers& pointers() const { return device_; }
  ForwardParams forward_params() const { return problem_.forward_params_at(device_, Device::cuda); }
  // Copies every output buffer back into the host problem.
  bool copy_outputs_back() {
    for (int id = 0; id < kBufferCount; ++id) {
      if (device_[id] == nullptr || !is_output(static_cast<BufferId>(id))) continue;
      const std::span<std::byte> host = problem_.bytes(static_cast<BufferId>(id));
      if (cudaMemcpy(host.data(), device_[id], host.size(), cudaMemcpyDeviceToHost) !=
          cudaSuccess) {
        return false;
      }
    }
    return true;
  }

 private:
  HostProblem& problem_;
  BufferPointers device_{};
  bool ok_ = true;
};

constexpr DType f16 = DType::fp16, b16 = DType::bf16;

// Small cases of every feature: cheap enough for compute-sanitizer (suite "Small").
std::vector<AttentionCase> small_table() {
  return {
      dense(b16, 1, 1, 1, 1, 1, 64),
      dense(f16, 2, 77, 45, 2, 1, 32),
      dense(b16, 1, 45, 130, 2, 2, 96),
      dense(f16, 1, 130, 77, 2, 2, 128),
      dense(b16, 1, 77, 77, 1, 1, 192),
      dense(f16, 1, 45, 130, 1, 1, 256),
      dense(b16, 2, 77, 45, 4, 1, 33),  // odd head dim: unaligned rows, scalar copies
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

// The CPU table in fp16 / bf16, plus long sequences and grids that fill the GPU.
std::vector<AttentionCase> table() {
  return {
      dense(b16, 1, 1023, 1023, 4, 1, 128),
      dense(f16, 1, 113, 203, 2, 2, 32),
      dense(b16, 3, 203, 113, 2, 1, 59),
      dense(f16, 3, 113, 203, 2, 2, 1),
      dense(f16, 1, 203, 113, 2, 2, 111),
      dense(b16, 1, 113, 113, 2, 2, 256),
      dense(f16, 1, 1023, 1023, 2, 2, 64),
      dense(b16, 1, 113, 1023, 16, 2, 64),
      dense(f16, 3, 203, 1, 4, 1, 128),
      scale(dense(b16, 1, 113, 203, 2, 2, 59), 0.3f),
      scale(dense(f16, 1, 113, 203, 2, 2, 64), -0.5f),  // negative scale: extras path
      dense(b16, 3, 1023, 203, 2, 2, 1),
      dense(f16, 3, 113, 1023, 8, 1, 32),
      dense(f16, 1, 1023, 1023, 2, 1, 256),
      dense(b16, 3, 203, 203, 24, 3, 111),
      dense(f16, 1, 203, 203, 2, 2, 160),
      dense(b16, 1, 203, 203, 2, 2, 80),
      value_dim(dense(b16, 1, 113, 203, 2, 1, 64), 32),
      value_dim(causal(dense(f16, 3, 203, 113, 2, 2, 59)), 128),
      value_dim(dense(b16, 1, 203, 203, 2, 1, 256), 40),
      scale(dense(b16, 1, 203, 1023, 2, 2, 64), 2.0f),
      scale(causal(dense(f16, 3, 113, 203, 2, 1, 128)), 1.5f),
      scale(dropout(dense(f16, 1, 113, 1023, 2, 2, 32), 0.3f), 1.0f),
      causal(dense(b16, 1, 1023, 1023, 2, 2, 64)),
      causal(dense(f16, 3, 113, 203, 2, 1, 128)),
      causal(dense(b16, 1, 203, 113, 2, 2, 32)),
      causal(dense(b16, 1, 1023, 113, 2, 1, 59)),
      window(dense(f16, 1, 203, 203, 2, 2, 64), 32, 16),
      window(dense(b16, 3, 113, 203, 8, 1, 111), 0, 0),
      window(dense(f16, 1, 203, 113, 2, 2, 64), -1, 7),
      window(dense(b16, 1, 113, 203, 2, 2, 128), 40, -1),
      window(causal(dense(f16, 1, 1023, 1023, 1, 1, 128)), 100, 0),
      causal(dense(b16, 1, 1023, 1023, 2, 2, 256)),
      causal(dense(f16, 3, 1, 203, 4, 1, 64)),
      window(dense(b16, 1, 1023, 113, 2, 2, 32), -1, 0),
      window(dense(f16, 3, 113, 1023, 2, 1, 1), 3, 200),
      softcap(dense(b16, 1, 113, 203, 2, 2, 64), 2.0f),
      softcap(causal(dense(f16, 3, 203, 113, 2, 1, 32)), 5.0f),
      alibi(dense(f16, 1, 203, 113, 4, 2, 64), AlibiMode::per_head),
      alibi(causal(dense(b16, 3, 113, 203, 2, 1, 128)), AlibiMode::per_batch_head),
      dropout(dense(f16, 1, 113, 203, 2, 2, 64), 0.1f),
      dropout(causal(dense(b16, 3, 203, 113, 2, 1, 59)), 0.3f),
      dropout(dense(f16, 1, 1023, 203, 2, 2, 32), 0.5f),
      softcap(dense(f16, 3, 203, 113, 4, 1, 256), 1.0f),
      alibi(window(dense(b16, 1, 1023, 1023, 2, 2, 64), 64, 64), AlibiMode::per_head),
      dropout(softcap(causal(dense(f16, 1, 113, 113, 16, 2, 59)), 10.0f), 0.9f),
      dropout(alibi(softcap(window(dense(b16, 1, 203, 203, 4, 1, 111), 50, 20), 3.0f),
                    AlibiMode::per_head),
              0.2f),
      varlen(f16, {{113, 203}, {0, 50}, {37, 0}, {1, 1}}, 2, 2, 64),
      causal(varlen(b16, {{203, 113}, {1, 203}, {0, 0}, {113, 113}}, 4, 1, 32)),
      dropout(varlen(f16, {{50, 70}, {113, 1}, {7, 113}}, 2, 1, 128), 0.25f),
      alibi(window(varlen(b16, {{113, 203}, {203, 113}}, 2, 2, 59), 30, 30),
            AlibiMode::per_batch_head),
      varlen(b16, {{1, 1}, {1023, 1023}, {0, 1}}, 2, 1, 64),
      dropout(causal(varlen(f16, {{113, 113}, {203, 1023}, {1, 0}}, 8, 1, 111)), 0.1f),
      seqused(dense(f16, 3, 113, 203, 2, 2, 64)),
      seqused(causal(dense(b16, 3, 203, 113, 2, 1, 128))),
      seqused(varlen(b16, {{113, 203}, {37, 0}, {50, 60}}, 2, 2, 32)),
      layout(dense(b16, 3, 113, 203, 2, 1, 64), Layout::padded),
      layout(causal(dense(f16, 1, 203, 113, 4, 2, 59)), Layout::heads_major),
      layout(dropout(dense(b16, 3, 113, 113, 2, 2, 111), 0.15f), Layout::padded),
      layout(varlen(b16, {{113, 203}, {0, 7}, {60, 60}}, 2, 2, 128), Layout::padded),
      layout(seqused(varlen(f16, {{203, 113}, {1, 50}}, 4, 1, 64)), Layout::heads_major),
      layout(softcap(alibi(dense(b16, 1, 113, 203, 2, 2, 256), AlibiMode::per_head), 4.0f),
             Layout::padded),
      // Long sequences, and batch * heads * query blocks well past the 132 SMs of an H100.
      dense(b16, 1, 4096, 4096, 2, 1, 128),
      causal(dense(f16, 1, 4096, 4096, 2, 2, 64)),
      causal(dense(b16, 4, 512, 512, 16, 4, 64)),
      dense(f16, 8, 256, 256, 16, 16, 128),
      window(dense(b16, 2, 2048, 2048, 8, 2, 256), 256, 0),
  };
}

void run_and_check(const AttentionCase& row, uint64_t seed) {
  HostProblem problem = make_problem(row, seed);
  DeviceMirror device(problem);
  ASSERT_TRUE(device.ok()) << "device allocation or copy failed";
  ForwardParams params = device.forward_params();
  params.backend = Backend::cuda_sm80;
  const Status status = flashattn::forward(params);
  if (status.code() == StatusCode::unsupported &&
      status.message().find("in this build") != std::string::npos) {
    GTEST_SKIP() << status.message();  // a build narrowed by FLASHATTN_HDIMS / _DTYPES
  }
  ASSERT_TRUE(status.ok()) << "forward: " << status.message();
  CUDA_ASSERT(cudaDeviceSynchronize());
  ASSERT_TRUE(device.copy_outputs_back());
  EXPECT_TRUE(check_forward(problem));
}

class CudaForward : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(CudaForward, MatchesReference) {
  SKIP_WITHOUT_GPU();
  run_and_check(GetParam(), 0x5eed0000 + GetParam().head_dim);
}

std::string case_name(const ::testing::TestParamInfo<AttentionCase>& info) {
  return info.param.name();
}

INSTANTIATE_TEST_SUITE_P(Small, CudaForward, ::testing::ValuesIn(small_table()), case_name);
INSTANTIATE_TEST_SUITE_P(Table, CudaForward, ::testing::ValuesIn(table()), case_name);

// Two runs with the same seed and offset give the same mask; another offset gives another.
TEST(CudaForwardDropout, SameSeedSameMaskOtherOffsetOtherMask) {
  SKIP_WITHOUT_GPU();
  HostProblem problem = make_problem(dropout(dense(b16, 1, 77, 130, 2, 2, 64), 0.4f), 11);
  DeviceMirror device(problem);
  ASSERT_TRUE(device.ok());
  ForwardParams params = device.forward_params();
  ASSERT_TRUE(flashattn::forward(params).ok());
  ASSERT_TRUE(device.copy_outputs_back());
  const std::span<std::byte> mask = problem.bytes(BufferId::dropout_mask);
  const std::vector<std::byte> first(mask.begin(), mask.end());
  ASSERT_TRUE(flashattn::forward(params).ok());
  ASSERT_TRUE(device.copy_outputs_back());
  EXPECT_TRUE(std::equal(mask.begin(), mask.end(), first.begin()));
  params.dropout_offset += 1;
  ASSERT_TRUE(flashattn::forward(params).ok());
  ASSERT_TRUE(device.copy_outputs_back());
  EXPECT_FALSE(std::equal(mask.begin(), mask.end(), first.begin()));
}

// q and out of [1, 2^19 + 3, 32, 128] bf16 (2^31 + 12288 elements each): 64-bit offsets all the
// way. q is one random block of rows repeated; rows sampled near the end and the start are
// checked against the oracle run on just those rows (non-causal, so rows are independent).
TEST(CudaForwardLarge, MoreThan2To31Elements) {
  SKIP_WITHOUT_GPU();
  constexpr int64_t kSeqlenQ = (int64_t{1} << 19) + 3;
  constexpr int64_t kHeads = 32;
  constexpr int64_t kDim = 128;
  constexpr int64_t kSeqlenK = 200;
  constexpr int64_t kRowElements = kHeads * kDim;
  constexpr int64_t kBlockRows = 4099;  // period of the repeated q rows (not a power of two)
  constexpr int64_t kQElements = kSeqlenQ * kRowElements;
  static_assert(kQElements > (int64_t{1} << 31));

  size_t free_bytes = 0, total_bytes = 0;
  CUDA_ASSERT(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (free_bytes < 2 * kQElements * 2 + (size_t{1} << 30)) {
    GTEST_SKIP() << "needs about 9 GB of free device memory";
  }

  std::mt19937 generator(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto random_bf16 = [&](int64_t count) {
    std::vector<std::byte> bytes(count * 2);
    for (int64_t i = 0; i < count; ++i) {
      cpu::store_from_float(bytes.data(), i, DType::bf16, normal(generator));
    }
    return bytes;
  };
  const std::vector<std::byte> q_block = random_bf16(kBlockRows * kRowElements);
  const std::vector<std::byte> k_host = random_bf16(kSeqlenK * kRowElements);
  const std::vector<std::byte> v_host = random_bf16(kSeqlenK * kRowElements);

  void *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr;
  float* lse = nullptr;
  CUDA_ASSERT(cudaMalloc(&q, kQElements * 2));
  CUDA_ASSERT(cudaMalloc(&out, kQElements * 2));
  CUDA_ASSERT(cudaMalloc(&k, k_host.size()));
  CUDA_ASSERT(cudaMalloc(&v, v_host.size()));
  CUDA_ASSERT(cudaMalloc(reinterpret_cast<void**>(&lse), kHeads * kSeqlenQ * sizeof(float)));
  for (int64_t row = 0; row < kSeqlenQ; row += kBlockRows) {
    const int64_t rows = std::min(kBlockRows, kSeqlenQ - row);
    CUDA_ASSERT(cudaMemcpy(static_cast<std::byte*>(q) + row * kRowElements * 2, q_block.data(),
                           rows * kRowElements * 2, cudaMemcpyHostToDevice));
  }
  CUDA_ASSERT(cudaMemcpy(k, k_host.data(), k_host.size(), cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaMemcpy(v, v_host.data(), v_host.size(), cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaMemset(out, 0xff, kQElements * 2));
  CUDA_ASSERT(cudaMemset(lse, 0xff, kHeads * kSeqlenQ * sizeof(float)));

  ForwardParams params;
  params.device = Device::cuda;
  params.dtype = DType::bf16;
  params.batch = 1;
  params.seqlen_q = kSeqlenQ;
  params.seqlen_k = kSeqlenK;
  params.heads_q = kHeads;
  params.heads_kv = kHeads;
  params.head_dim = kDim;
  auto dense_ref = [&](void* data, int64_t seqlen) {
    return TensorRef{data, seqlen * kRowElements, kRowElements, kDim, 1};
  };
  params.q = dense_ref(q, kSeqlenQ);
  params.k = dense_ref(k, kSeqlenK);
  params.v = dense_ref(v, kSeqlenK);
  params.out = dense_ref(out, kSeqlenQ);
  params.lse = LseRef{lse, 0, 0};
  const Status status = flashattn::forward(params);
  EXPECT_TRUE(status.ok()) << status.message();
  CUDA_ASSERT(cudaDeviceSynchronize());

  const std::vector<int64_t> sample_rows = {
      0, 1, 4098, 300001, kSeqlenQ - 4, kSeqlenQ - 3, kSeqlenQ - 2, kSeqlenQ - 1};
  const int64_t samples = static_cast<int64_t>(sample_rows.size());
  std::vector<double> q_sample(samples * kRowElements);
  std::vector<double> out_sample(samples * kRowElements);
  std::vector<double> lse_sample(kHeads * samples);
  std::vector<std::byte> row_bytes(kRowElements * 2);
  for (int64_t s = 0; s < samples; ++s) {
    const int64_t row = sample_rows[s];
    for (int64_t e = 0; e < kRowElements; ++e) {
      q_sample[s * kRowElements + e] =
          cpu::load_as_float(q_block.data(), (row % kBlockRows) * kRowElements + e, DType::bf16);
    }
    CUDA_ASSERT(cudaMemcpy(row_bytes.data(), static_cast<std::byte*>(out) + row * kRowElements * 2,
                           row_bytes.size(), cudaMemcpyDeviceToHost));
    for (int64_t e = 0; e < kRowElements; ++e) {
      out_sample[s * kRowElements + e] = cpu::load_as_float(row_bytes.data(), e, DType::bf16);
    }
    for (int64_t h = 0; h < kHeads; ++h) {
      float value = 0;
      CUDA_ASSERT(
          cudaMemcpy(&value, lse + h * kSeqlenQ + row, sizeof(float), cudaMemcpyDeviceToHost));
      lse_sample[h * samples + s] = value;
    }
  }
  std::vector<double> k_double(kSeqlenK * kRowElements), v_double(kSeqlenK * kRowElements);
  for (int64_t e = 0; e < kSeqlenK * kRowElements; ++e) {
    k_double[e] = cpu::load_as_float(k_host.data(), e, DType::bf16);
    v_double[e] = cpu::load_as_float(v_host.data(), e, DType::bf16);
  }
  AttentionArgs sample_args = params;
  sample_args.device = Device::cpu;
  sample_args.seqlen_q = samples;
  reference::ForwardResult exact, lowp;
  ASSERT_TRUE(reference::forward_dense(sample_args, reference::Precision::fp64, q_sample, k_double,
                                       v_double, &exact)
                  .ok());
  ASSERT_TRUE(reference::forward_dense(sample_args, reference::Precision::input_dtype, q_sample,
                                       k_double, v_double, &lowp)
                  .ok());
  const reference::Comparison out_check = reference::compare(out_sample, exact.out, lowp.out, 2.0);
  EXPECT_TRUE(out_check.passed) << "out: " << out_check.describe();
  const reference::Comparison lse_check = reference::compare_lse(lse_sample, exact.lse);
  EXPECT_TRUE(lse_check.passed) << "lse: " << lse_check.describe();

  cudaFree(q);
  cudaFree(k);
  cudaFree(v);
  cudaFree(out);
  cudaFree(lse);
}

// Arguments the CUDA backend refuses before any launch, each with a named error.
TEST(CudaForwardChecks, HostPointersAreRefusedByName) {
  SKIP_WITHOUT_GPU();
  HostProblem problem = make_problem(dense(b16, 1, 16, 16, 1, 1, 64), 3);
  ForwardParams params = problem.forward_params();  // host pointers
  params.device = Device::cuda;
  const Status status = flashattn::forward(params);
  EXPECT_EQ(status.code(), StatusCode::unsupported);
  EXPECT_NE(status.message().find("q:"), std::string::npos) << status.message();
}

TEST(CudaForwardChecks, BackwardIsNotImplementedYet) {
  SKIP_WITHOUT_GPU();
  HostProblem problem = make_problem(dense(b16, 1, 16, 16, 1, 1, 64), 3);
  DeviceMirror device(problem);
  ASSERT_TRUE(device.ok());
  BackwardParams params = problem.backward_params_at(device.pointers(), Device::cuda);
  const Status status = flashattn::backward(params);
  EXPECT_EQ(status.code(), StatusCode::unsupported);
  EXPECT_NE(status.message().find("issue 5"), std::string::npos) << status.message();
}

TEST(CudaForwardChecks, HeadDimAboveTheLargestTileIsRefused) {
  SKIP_WITHOUT_GPU();
  HostProblem problem = make_problem(dense(b16, 1, 8, 8, 1, 1, 64), 3);
  DeviceMirror device(problem);
  ASSERT_TRUE(device.ok());
  ForwardParams params = device.forward_params();
  params.head_dim_v = 320;  // v's rows are too short for this, but the check comes first
  params.v.row_stride = 320;
  params.v.batch_stride = 8 * 320;
  const Status status = flashattn::forward(params);
  EXPECT_FALSE(status.ok());
}

}  // namespace
}  // namespace flashattn::testing
