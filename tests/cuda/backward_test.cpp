// The cuda_sm80 backward (dq, dk, dv) against the fp64 oracle: the contract rows and CUDA extras,
// long sequences, small cases of every feature (compute-sanitizer), exact zeros where no key or
// no query is seen, deterministic mode and the workspace API.
// The backward reads the out and LSE of the CUDA forward run just before it on the same inputs.
// Every test skips (with a message) when no CUDA device is present; on a GPU, a backward that
// returns an error fails (a narrowed build, or a GPU with too little shared memory, skips).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "api/normalize.h"
#include "common/score_mods.h"
#include "cpu/reference/sequences.h"
#include "flashattn/flashattn.h"
#include "support/attention_case.h"
#include "support/case_builders.h"
#include "support/checks.h"
#include "support/contract_rows.h"
#include "support/device_mirror.h"
#include "support/host_problem.h"

namespace flashattn::testing {
namespace {

constexpr DType f16 = DType::fp16, b16 = DType::bf16;

// The rows the small cases add for the backward: GQA groups reduced into dk / dv, one-sided
// windows, varlen with seqused_k, and features combined with GQA and strided layouts.
std::vector<AttentionCase> small_backward_rows() {
  std::vector<AttentionCase> rows = small_rows();
  rows.insert(rows.end(),
              {
                  dense(b16, 1, 100, 90, 8, 1, 64),  // GQA 8:1
                  dropout(causal(dense(f16, 2, 90, 128, 4, 2, 64)), 0.2f),
                  window(dense(b16, 1, 128, 100, 2, 2, 32), 16, -1),
                  window(dense(f16, 1, 100, 128, 2, 1, 64), -1, 8),
                  window(dense(b16, 1, 120, 60, 2, 1, 64), 10, 2),  // rows 0..57 see no key
                  window(dense(f16, 1, 50, 120, 2, 2, 64), 3, 3),   // keys 0..66 seen by none
                  causal(dense(b16, 1, 128, 128, 2, 1, 256)),
                  value_dim(causal(dense(b16, 1, 90, 90, 2, 1, 128)), 64),
                  scale(dense(b16, 1, 64, 100, 2, 2, 64), 0.7f),
                  softcap(alibi(dense(f16, 1, 64, 128, 4, 2, 128), AlibiMode::per_head), 5.0f),
                  seqused(varlen(b16, {{60, 90}, {0, 30}, {40, 0}, {128, 128}}, 4, 2, 64)),
                  layout(dropout(varlen(f16, {{70, 50}, {0, 9}, {33, 33}}, 2, 1, 64), 0.25f),
                         Layout::padded),
                  layout(dropout(dense(b16, 2, 64, 96, 4, 2, 96), 0.1f), Layout::heads_major),
              });
  return rows;
}

// The contract rows in fp16 / bf16, the CUDA extras, long sequences (few heads: the oracle is
// the slow part) and grids well past the 132 SMs of an H100.
std::vector<AttentionCase> table() {
  std::vector<AttentionCase> rows = contract_rows(Fp32Rows::to_half);
  const std::vector<AttentionCase> extras = cuda_extra_rows();
  rows.insert(rows.end(), extras.begin(), extras.end());
  rows.insert(rows.end(), {
                              dense(b16, 1, 4096, 4096, 1, 1, 128),
                              causal(dense(f16, 1, 4096, 4096, 2, 1, 64)),
                              causal(dense(b16, 4, 512, 512, 16, 4, 64)),
                              dense(f16, 8, 256, 256, 16, 16, 128),
                              window(dense(b16, 1, 2048, 2048, 2, 1, 256), 256, 0),
                          });
  return rows;
}

uint64_t seed_for(const AttentionCase& row) {
  return 0xbacc0000 + static_cast<uint64_t>(row.head_dim);
}

// A helper ended the test (fatal failure or skip): the caller returns too.
bool stopped() {
  return ::testing::Test::HasFatalFailure() || ::testing::Test::IsSkipped();
}

// The CUDA forward writes out, LSE and the dropout mask for the backward to read.
void run_forward(DeviceMirror& device) {
  ForwardParams params = device.forward_params();
  params.backend = Backend::cuda_sm80;
  ASSERT_OK_OR_SKIP(flashattn::forward(params));
  CUDA_ASSERT(cudaDeviceSynchronize());
}

BackwardParams backward_params(const DeviceMirror& device, bool deterministic) {
  BackwardParams params = device.backward_params();
  params.backend = Backend::cuda_sm80;
  params.deterministic = deterministic;
  return params;
}

void run_backward(const BackwardParams& params) {
  ASSERT_OK_OR_SKIP(flashattn::backward(params));
  CUDA_ASSERT(cudaDeviceSynchronize());
}

// How many query rows see no key and how many stored keys no query sees (per head).
struct ZeroCounts {
  int64_t empty_rows = 0;
  int64_t unseen_keys = 0;
};

// dq of a row that sees no key, and dk / dv of a key that no query sees (past seqused_k,
// outside every window, in a sequence without queries), must be exactly 0: the criterion's
// 1e-5 slack would let a small wrong value through.
::testing::AssertionResult check_zero_gradients(HostProblem& problem, ZeroCounts* counts) {
  BackwardParams params = problem.backward_params();
  detail::normalize_args(params);
  std::vector<reference::SequenceBounds> sequences;
  if (Status status = reference::sequence_bounds(params, &sequences); !status.ok()) {
    return ::testing::AssertionFailure() << "sequence bounds: " << status.message();
  }
  const std::vector<double> dq = gather_output(problem, BufferId::dq);
  const std::vector<double> dk = gather_output(problem, BufferId::dk);
  const std::vector<double> dv = gather_output(problem, BufferId::dv);
  if (dq.empty() || dk.empty() || dv.empty()) {
    return ::testing::AssertionFailure() << "gradients could not be gathered";
  }
  // Whether dense row `row` (`width` values: every head of one token) holds a nonzero.
  auto nonzero = [](const std::vector<double>& values, int64_t row, int64_t width) {
    const auto begin = values.begin() + row * width;
    return std::any_of(begin, begin + width, [](double value) { return value != 0.0; });
  };
  std::string failures;
  for (size_t b = 0; b < sequences.size(); ++b) {
    const reference::SequenceBounds& sequence = sequences[b];
    const MaskSpec mask{sequence.len_q, sequence.used_k, params.window_left, params.window_right};
    // seen[col] > 0 when some row's range [first_col, last_col) covers col.
    std::vector<int64_t> seen(static_cast<size_t>(sequence.len_k) + 1, 0);
    for (int64_t row = 0; row < sequence.len_q; ++row) {
      const int64_t first = mask.first_col(row), last = mask.last_col(row);
      if (first < last) {
        ++seen[static_cast<size_t>(first)];
        --seen[static_cast<size_t>(last)];
        continue;
      }
      counts->empty_rows += 1;
      const int64_t width = params.heads_q * params.head_dim;
      if (nonzero(dq, sequence.q_row0 + row, width)) {
        failures += "\n  dq: batch " + std::to_string(b) + " row " + std::to_string(row) +
                    " sees no key but its gradient is not 0";
      }
    }
    int64_t running = 0;
    for (int64_t col = 0; col < sequence.len_k; ++col) {
      running += seen[static_cast<size_t>(col)];
      if (running > 0) continue;
      counts->unseen_keys += 1;
      const int64_t row = sequence.k_row0 + col;
      const bool dk_bad = nonzero(dk, row, params.heads_kv * params.head_dim);
      const bool dv_bad = nonzero(dv, row, params.heads_kv * params.head_dim_v);
      if (dk_bad || dv_bad) {
        failures += std::string("\n  ") + (dk_bad ? "dk" : "dv") + ": batch " + std::to_string(b) +
                    " key " + std::to_string(col) +
                    " is seen by no query but its gradient is not 0";
      }
    }
  }
  if (failures.empty()) return ::testing::AssertionSuccess();
  if (failures.size() > 2000) failures.resize(2000);
  return ::testing::AssertionFailure() << "case " << problem.config().name() << failures;
}

// Forward then backward on the device, gradients checked against the oracle (3x criterion,
// untouched stride gaps) and for exact zeros.
void run_and_check(const AttentionCase& row, bool deterministic, ZeroCounts* counts) {
  HostProblem problem = make_problem(row, seed_for(row));
  DeviceMirror device(problem);
  ASSERT_TRUE(device.ok()) << "device allocation or copy failed";
  run_forward(device);
  if (stopped()) return;
  run_backward(backward_params(device, deterministic));
  if (stopped()) return;
  ASSERT_TRUE(device.copy_outputs_back());
  EXPECT_TRUE(check_backward(problem));
  EXPECT_TRUE(check_zero_gradients(problem, counts));
}

class CudaBackward : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(CudaBackward, MatchesReference) {
  SKIP_WITHOUT_GPU();
  ZeroCounts counts;
  run_and_check(GetParam(), /*deterministic=*/false, &counts);
}

// deterministic = true takes other code paths (no atomics): the same table of small cases.
TEST_P(CudaBackward, DeterministicMatchesReference) {
  SKIP_WITHOUT_GPU();
  ZeroCounts counts;
  run_and_check(GetParam(), /*deterministic=*/true, &counts);
}

std::string case_name(const ::testing::TestParamInfo<AttentionCase>& info) {
  return info.param.name();
}

// "SmallBackward/*" is the compute-sanitizer filter of bench/gpu.sh.
INSTANTIATE_TEST_SUITE_P(SmallBackward, CudaBackward, ::testing::ValuesIn(small_backward_rows()),
                         case_name);

class CudaBackwardTable : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(CudaBackwardTable, MatchesReference) {
  SKIP_WITHOUT_GPU();
  ZeroCounts counts;
  run_and_check(GetParam(), /*deterministic=*/false, &counts);
}

INSTANTIATE_TEST_SUITE_P(Table, CudaBackwardTable, ::testing::ValuesIn(table()), case_name);

// Each row has query rows that see no key: their dq must be exactly 0. (The loops of these
// tests use bf16 d64 rows: the narrowest development build runs them all.)
TEST(CudaBackwardSmall, RowsThatSeeNoKeyGetZeroDq) {
  SKIP_WITHOUT_GPU();
  for (const AttentionCase& row : {
           causal(dense(b16, 1, 128, 40, 2, 1, 64)),                       // rows 0..87
           window(dense(b16, 1, 120, 60, 2, 1, 64), 10, 2),                // rows 0..57
           seqused(varlen(b16, {{40, 2}, {30, 60}, {20, 30}}, 2, 1, 64)),  // batch 0 uses 0 keys
           varlen(b16, {{40, 0}, {30, 60}}, 4, 2, 64),  // a sequence without keys
       }) {
    SCOPED_TRACE(row.name());
    ZeroCounts counts;
    run_and_check(row, /*deterministic=*/false, &counts);
    if (stopped()) return;
    EXPECT_GT(counts.empty_rows, 0) << "the case has no row without keys";
  }
}

// Each row has stored keys that no query sees: their dk and dv must be exactly 0.
TEST(CudaBackwardSmall, KeysThatNoQuerySeesGetZeroDkDv) {
  SKIP_WITHOUT_GPU();
  for (const AttentionCase& row : {
           window(dense(b16, 1, 50, 120, 2, 2, 64), 3, 3),             // keys 0..66
           window(causal(dense(b16, 1, 64, 128, 4, 1, 64)), 8, 0),     // keys 0..55
           seqused(dense(b16, 3, 64, 90, 2, 1, 64)),                   // keys past seqused_k
           dropout(varlen(b16, {{0, 40}, {30, 60}}, 4, 2, 64), 0.2f),  // a sequence, no queries
       }) {
    SCOPED_TRACE(row.name());
    ZeroCounts counts;
    run_and_check(row, /*deterministic=*/false, &counts);
    if (stopped()) return;
    EXPECT_GT(counts.unseen_keys, 0) << "the case has no key that no query sees";
  }
}

constexpr BufferId kGradients[] = {BufferId::dq, BufferId::dk, BufferId::dv};

// Bytes of the three gradients as they are on the device now.
std::vector<std::vector<std::byte>> download_gradients(const DeviceMirror& device) {
  std::vector<std::vector<std::byte>> gradients;
  for (BufferId id : kGradients) gradients.push_back(device.download(id));
  return gradients;
}

// Empty when `actual` has the bits of `expected`, else which gradient differs and how much.
std::string bitwise_difference(const std::vector<std::vector<std::byte>>& expected,
                               const std::vector<std::vector<std::byte>>& actual) {
  std::string differences;
  for (size_t g = 0; g < std::size(kGradients); ++g) {
    if (actual[g].size() != expected[g].size() || actual[g].empty()) {
      differences += std::string(" ") + buffer_name(kGradients[g]) + ": not downloaded;";
      continue;
    }
    int64_t differing = 0;
    for (size_t i = 0; i < actual[g].size(); ++i) differing += actual[g][i] != expected[g][i];
    if (differing > 0) {
      differences += std::string(" ") + buffer_name(kGradients[g]) + ": " +
                     std::to_string(differing) + " bytes differ;";
    }
  }
  return differences;
}

// Device scratch owned by a test.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    ok_ = cudaMalloc(&data_, std::max<size_t>(bytes, 1)) == cudaSuccess;
    if (!ok_) data_ = nullptr;
  }
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  bool ok() const { return ok_; }
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  // Garbage (NaN as fp32 / fp16 / bf16): a backend must not count on a zeroed workspace.
  bool dirty() { return cudaMemset(data_, 0xff, bytes_) == cudaSuccess; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  bool ok_ = false;
};

// backward_workspace_size for `params`; skips rows a narrowed build has no kernel for.
void workspace_size(const BackwardParams& params, size_t* bytes) {
  ASSERT_OK_OR_SKIP(flashattn::backward_workspace_size(params, bytes));
}

// Runs the deterministic backward `runs` times on the same inputs (gradients poisoned before
// each run): every run must give the bits of the first, and those bits must pass the criterion.
void check_repeatable(const AttentionCase& row, int runs) {
  HostProblem problem = make_problem(row, seed_for(row));
  DeviceMirror device(problem);
  ASSERT_TRUE(device.ok()) << "device allocation or copy failed";
  run_forward(device);
  if (stopped()) return;
  const BackwardParams params = backward_params(device, /*deterministic=*/true);
  std::vector<std::vector<std::byte>> first;
  for (int run = 0; run < runs; ++run) {
    ASSERT_TRUE(device.poison_gradients());
    run_backward(params);
    if (stopped()) return;
    if (run == 0) {
      first = download_gradients(device);
      continue;
    }
    const std::string difference = bitwise_difference(first, download_gradients(device));
    ASSERT_TRUE(difference.empty()) << "run " << run << " differs from run 0:" << difference;
  }
  ASSERT_TRUE(device.copy_outputs_back());
  EXPECT_TRUE(check_backward(problem));
  ZeroCounts counts;
  EXPECT_TRUE(check_zero_gradients(problem, &counts));
}

TEST(CudaBackwardDeterministic, CausalB2H8S2048D128Bf16GivesTheSameBitsIn20Runs) {
  SKIP_WITHOUT_GPU();
  check_repeatable(causal(dense(b16, 2, 2048, 2048, 8, 8, 128)), 20);
}

TEST(CudaBackwardDeterministic, Gqa16To4S2048D64Fp16GivesTheSameBitsIn20Runs) {
  SKIP_WITHOUT_GPU();
  check_repeatable(dense(f16, 1, 2048, 2048, 16, 4, 64), 20);
}

// The bf16 d64 instance (the narrowest development build has it): varlen, dropout, GQA.
TEST(CudaBackwardDeterministic, VarlenDropoutGqaGivesTheSameBitsIn20Runs) {
  SKIP_WITHOUT_GPU();
  check_repeatable(dropout(varlen(b16, {{1023, 700}, {0, 33}, {300, 1500}}, 8, 2, 64), 0.15f), 20);
}

// Without a mask, key blocks walk the query blocks from rotated starts (n * spacing, the
// spacing query blocks / key blocks), and each query block takes their adds in the order the
// walks reach it (tile widths 64 and 256 on devices with the shared memory; BackwardConfig::
// kRotateWalks): spacing 3 (5 key blocks, 16 query blocks), spacing 1 with GQA (the walk
// wraps per query head), and varlen sequences that rotate (1000 x 300, 513 x 513) beside
// ones that cannot (100 x 900: more key blocks than query blocks) and an empty one.
TEST(CudaBackwardDeterministic, RotatedWalksGiveTheSameBitsIn5Runs) {
  SKIP_WITHOUT_GPU();
  for (const AttentionCase& row : {
           dense(b16, 1, 1024, 300, 4, 4, 256),
           dense(f16, 2, 700, 700, 4, 2, 64),
           varlen(b16, {{1000, 300}, {100, 900}, {0, 50}, {513, 513}}, 4, 2, 256),
       }) {
    SCOPED_TRACE(row.name());
    check_repeatable(row, 5);
    if (stopped()) return;
  }
}

// A caller workspace (dirty, of exactly the size asked for, then larger) gives the bits of a
// library-allocated one, run after run.
TEST(CudaBackwardDeterministic, CallerWorkspaceGivesTheLibraryWorkspaceBits) {
  SKIP_WITHOUT_GPU();
  for (const AttentionCase& row : {
           causal(dense(b16, 2, 1024, 1024, 8, 2, 64)),
           dropout(seqused(varlen(b16, {{500, 300}, {0, 20}, {777, 1023}}, 4, 1, 64)), 0.1f),
       }) {
    SCOPED_TRACE(row.name());
    HostProblem problem = make_problem(row, seed_for(row));
    DeviceMirror device(problem);
    ASSERT_TRUE(device.ok()) << "device allocation or copy failed";
    run_forward(device);
    if (stopped()) return;
    BackwardParams params = backward_params(device, /*deterministic=*/true);
    ASSERT_TRUE(device.poison_gradients());
    run_backward(params);
    if (stopped()) return;
    const std::vector<std::vector<std::byte>> library = download_gradients(device);

    size_t bytes = 0;
    workspace_size(params, &bytes);
    if (stopped()) return;
    for (size_t size : {bytes, bytes, bytes + 4096}) {  // twice: a used workspace is dirty too
      DeviceBuffer workspace(size);
      ASSERT_TRUE(workspace.ok() && workspace.dirty()) << "workspace of " << size << " bytes";
      params.workspace = workspace.data();
      params.workspace_bytes = size;
      for (int run = 0; run < 2; ++run) {
        ASSERT_TRUE(device.poison_gradients());
        run_backward(params);
        if (stopped()) return;
        const std::string difference = bitwise_difference(library, download_gradients(device));
        ASSERT_TRUE(difference.empty()) << "caller workspace of " << size << " bytes (asked for "
                                        << bytes << "), run " << run << ":" << difference;
      }
    }
    ASSERT_TRUE(device.copy_outputs_back());
    EXPECT_TRUE(check_backward(problem));
  }
}

// Small cases run with a caller workspace of exactly the size asked for (compute-sanitizer's
// memcheck sees any access past it), both modes.
TEST(CudaBackwardSmall, CallerWorkspaceOfExactSize) {
  SKIP_WITHOUT_GPU();
  for (const AttentionCase& row : {
           causal(dense(b16, 2, 77, 45, 4, 1, 64)),
           dropout(seqused(varlen(b16, {{77, 130}, {0, 20}, {30, 0}, {128, 1}}, 4, 2, 64)), 0.2f),
           layout(window(dense(b16, 1, 130, 100, 2, 1, 64), 20, 5), Layout::padded),
       }) {
    for (bool deterministic : {false, true}) {
      SCOPED_TRACE(row.name() + (deterministic ? " deterministic" : ""));
      HostProblem problem = make_problem(row, seed_for(row));
      DeviceMirror device(problem);
      ASSERT_TRUE(device.ok()) << "device allocation or copy failed";
      run_forward(device);
      if (stopped()) return;
      BackwardParams params = backward_params(device, deterministic);
      size_t bytes = 0;
      workspace_size(params, &bytes);
      if (stopped()) return;
      DeviceBuffer workspace(bytes);
      ASSERT_TRUE(workspace.ok() && workspace.dirty());
      params.workspace = workspace.data();
      params.workspace_bytes = bytes;
      run_backward(params);
      if (stopped()) return;
      ASSERT_TRUE(device.copy_outputs_back());
      EXPECT_TRUE(check_backward(problem));
    }
  }
}

// backward_workspace_size answers for CUDA problems (no launch), the same each time.
TEST(CudaBackwardWorkspace, SizeIsPositiveForACudaProblem) {
  SKIP_WITHOUT_GPU();
  for (const AttentionCase& row : {
           dense(b16, 1, 113, 203, 2, 2, 64),
           causal(dense(b16, 3, 1023, 1023, 8, 2, 64)),
           varlen(b16, {{113, 203}, {0, 50}, {37, 0}}, 4, 1, 64),
           dense(f16, 1, 203, 113, 2, 2, 256),
       }) {
    for (bool deterministic : {false, true}) {
      SCOPED_TRACE(row.name() + (deterministic ? " deterministic" : ""));
      HostProblem problem = make_problem(row, seed_for(row));
      DeviceMirror device(problem);
      ASSERT_TRUE(device.ok()) << "device allocation or copy failed";
      const BackwardParams params = backward_params(device, deterministic);
      size_t bytes = 0, again = 0;
      workspace_size(params, &bytes);
      if (stopped()) return;
      EXPECT_GT(bytes, 0u);
      workspace_size(params, &again);
      EXPECT_EQ(again, bytes);
    }
  }
}

// A caller workspace smaller than backward_workspace_size is refused by name before any work:
// StatusCode::invalid_argument naming "workspace", gradients untouched, no CUDA error left.
TEST(CudaBackwardWorkspace, TooSmallIsANamedErrorAndWritesNothing) {
  SKIP_WITHOUT_GPU();
  HostProblem problem = make_problem(causal(dense(b16, 2, 203, 113, 4, 2, 64)), 5);
  DeviceMirror device(problem);
  ASSERT_TRUE(device.ok()) << "device allocation or copy failed";
  run_forward(device);
  if (stopped()) return;
  for (bool deterministic : {false, true}) {
    BackwardParams params = backward_params(device, deterministic);
    size_t bytes = 0;
    workspace_size(params, &bytes);
    if (stopped()) return;
    ASSERT_GT(bytes, 0u);
    DeviceBuffer workspace(bytes);
    ASSERT_TRUE(workspace.ok());
    for (size_t short_size : {bytes - 1, bytes / 2, size_t{1}}) {
      SCOPED_TRACE(std::to_string(short_size) + " of " + std::to_string(bytes) + " bytes" +
                   (deterministic ? ", deterministic" : ""));
      ASSERT_TRUE(device.poison_gradients());
      params.workspace = workspace.data();
      params.workspace_bytes = short_size;
      const Status status = flashattn::backward(params);
      EXPECT_EQ(status.code(), StatusCode::invalid_argument) << status.message();
      EXPECT_NE(status.message().find("workspace"), std::string::npos) << status.message();
      CUDA_ASSERT(cudaDeviceSynchronize());
      CUDA_ASSERT(cudaGetLastError());
      for (BufferId id : kGradients) {
        const std::vector<std::byte> gradient = device.download(id);
        ASSERT_FALSE(gradient.empty());
        EXPECT_TRUE(std::all_of(gradient.begin(), gradient.end(),
                                [](std::byte value) { return value == kPoisonByte; }))
            << buffer_name(id) << " was written by a refused call";
      }
    }
  }
}

}  // namespace
}  // namespace flashattn::testing
