// The main correctness table: Backend::cpu_tiled against the fp64 oracle, forward and backward,
// on the contract rows (support/contract_rows.h) with their fp32 rows kept.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>
#include <vector>

#include "cpu/element.h"
#include "flashattn/flashattn.h"
#include "support/attention_case.h"
#include "support/case_builders.h"
#include "support/checks.h"
#include "support/contract_rows.h"
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

// FLASHATTN_TABLE_SEED=<n> draws other inputs for every row (to hunt for borderline cases);
// the default is fixed so that ctest runs are reproducible.
uint64_t table_seed() {
  const char* text = std::getenv("FLASHATTN_TABLE_SEED");
  return text != nullptr ? std::strtoull(text, nullptr, 10) : 0x5eed0000;
}

constexpr DType f32 = DType::fp32, f16 = DType::fp16, b16 = DType::bf16;

class TiledVsReference : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(TiledVsReference, ForwardAndBackward) {
  const AttentionCase& row = GetParam();
  HostProblem problem = make_problem(row, table_seed() + row.head_dim);

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

INSTANTIATE_TEST_SUITE_P(Table, TiledVsReference,
                         ::testing::ValuesIn(contract_rows(Fp32Rows::keep)),
                         [](const ::testing::TestParamInfo<AttentionCase>& info) {
                           return info.param.name();
                         });

// deterministic = true: two backward runs give the same bytes. Rows with GQA groups, many
// query rows per key and varlen, where an order-dependent reduction would show.
std::vector<AttentionCase> determinism_rows() {
  return {
      dense(b16, 3, 203, 113, 16, 2, 64),
      dropout(causal(dense(f32, 1, 1023, 203, 4, 1, 32)), 0.2f),
      layout(varlen(f16, {{113, 203}, {0, 7}, {203, 1}}, 4, 2, 59), Layout::padded),
  };
}

class DeterministicBackward : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(DeterministicBackward, TwoRunsGiveTheSameBytes) {
  HostProblem problem = make_problem(GetParam(), /*seed=*/0xdee7);
  ASSERT_TRUE(fill_forward_outputs_with_reference(problem).ok());
  BackwardParams params = problem.backward_params();
  params.backend = backend_under_test();
  params.deterministic = true;
  const Status first_status = flashattn::backward(params);
  ASSERT_TRUE(first_status.ok()) << first_status.message();
  EXPECT_TRUE(check_backward(problem));
  std::vector<std::vector<std::byte>> first;
  for (BufferId id : {BufferId::dq, BufferId::dk, BufferId::dv}) {
    first.emplace_back(problem.bytes(id).begin(), problem.bytes(id).end());
  }
  problem.poison_gradients();
  ASSERT_TRUE(flashattn::backward(params).ok());
  int index = 0;
  for (BufferId id : {BufferId::dq, BufferId::dk, BufferId::dv}) {
    const std::span<const std::byte> second = problem.bytes(id);
    EXPECT_TRUE(std::equal(second.begin(), second.end(), first[index++].begin()))
        << buffer_name(id) << " differs between two deterministic runs";
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, DeterministicBackward, ::testing::ValuesIn(determinism_rows()),
                         [](const ::testing::TestParamInfo<AttentionCase>& info) {
                           return info.param.name();
                         });

// The work split must not matter: one thread, and an odd thread count that divides nothing.
class ThreadCounts : public ::testing::TestWithParam<int> {};

TEST_P(ThreadCounts, ForwardAndBackwardStillMatchTheOracle) {
  for (const AttentionCase& row :
       {dropout(causal(dense(b16, 3, 203, 113, 4, 2, 64)), 0.2f),
        window(varlen(f32, {{113, 203}, {0, 9}, {203, 203}}, 4, 1, 59), 20, 40)}) {
    HostProblem problem = make_problem(row, 0x7ead + static_cast<uint64_t>(GetParam()));
    ForwardParams forward_params = problem.forward_params();
    forward_params.backend = backend_under_test();
    forward_params.num_threads = GetParam();
    ASSERT_TRUE(flashattn::forward(forward_params).ok());
    EXPECT_TRUE(check_forward(problem));
    BackwardParams backward_params = problem.backward_params();
    backward_params.backend = backend_under_test();
    backward_params.num_threads = GetParam();
    ASSERT_TRUE(flashattn::backward(backward_params).ok());
    EXPECT_TRUE(check_backward(problem));
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, ThreadCounts, ::testing::Values(1, 3));

// The harness itself: the oracle's own outputs pass, and each kind of wrong output fails.
// These run whatever backend the table targets, so the table can be trusted to fail.
class HarnessSelfCheck : public ::testing::Test {
 protected:
  // Runs the oracle's forward and backward into the problem's buffers.
  static void run_reference(HostProblem& problem) {
    ForwardParams forward_params = problem.forward_params();
    forward_params.backend = Backend::cpu_reference;
    ASSERT_TRUE(flashattn::forward(forward_params).ok());
    BackwardParams backward_params = problem.backward_params();
    backward_params.backend = Backend::cpu_reference;
    ASSERT_TRUE(flashattn::backward(backward_params).ok());
  }
  // Offset of the n-th logical element of a buffer (skipping stride gaps).
  static int64_t logical_offset(const HostProblem& problem, BufferId id, int64_t n) {
    const std::vector<bool> logical = problem.logical_elements(id);
    for (size_t i = 0; i < logical.size(); ++i) {
      if (logical[i] && n-- == 0) return static_cast<int64_t>(i);
    }
    return -1;
  }
  static void set_element(HostProblem& problem, BufferId id, int64_t offset, float value) {
    if (id == BufferId::lse) {
      std::memcpy(problem.bytes(id).data() + offset * sizeof(float), &value, sizeof(float));
      return;
    }
    cpu::store_from_float(problem.bytes(id).data(), offset, problem.config().dtype, value);
  }
  static float get_element(const HostProblem& problem, BufferId id, int64_t offset) {
    return cpu::load_as_float(problem.bytes(id).data(), offset, problem.config().dtype);
  }

  AttentionCase row_ =
      layout(dropout(causal(dense(DType::bf16, 2, 47, 31, 4, 2, 24)), 0.2f), Layout::padded);
};

TEST_F(HarnessSelfCheck, ReferenceOutputsPass) {
  for (const AttentionCase& row : {row_, varlen(DType::fp16, {{20, 30}, {0, 5}, {9, 0}}, 2, 1, 16),
                                   seqused(dense(DType::fp32, 2, 40, 33, 2, 2, 8))}) {
    HostProblem problem = make_problem(row, 7);
    run_reference(problem);
    EXPECT_TRUE(check_forward(problem));
    EXPECT_TRUE(check_backward(problem));
  }
}

TEST_F(HarnessSelfCheck, CatchesAWrongOutputValue) {
  HostProblem problem = make_problem(row_, 7);
  run_reference(problem);
  // The last row sees keys; shift one of its values by far more than bf16 rounding.
  const int64_t offset = logical_offset(problem, BufferId::out, 46 * 4 * 24 + 5);
  set_element(problem, BufferId::out, offset, get_element(problem, BufferId::out, offset) + 0.25f);
  EXPECT_FALSE(check_forward(problem));
}

TEST_F(HarnessSelfCheck, CatchesAnUnwrittenOutput) {
  HostProblem problem = make_problem(row_, 7);
  run_reference(problem);
  set_element(problem, BufferId::out, logical_offset(problem, BufferId::out, 1000),
              std::numeric_limits<float>::quiet_NaN());
  EXPECT_FALSE(check_forward(problem));
}

TEST_F(HarnessSelfCheck, CatchesAWrongLse) {
  HostProblem problem = make_problem(row_, 7);
  run_reference(problem);
  const int64_t offset = logical_offset(problem, BufferId::lse, 40);
  float value;
  std::memcpy(&value, problem.bytes(BufferId::lse).data() + offset * sizeof(float), sizeof(value));
  set_element(problem, BufferId::lse, offset, value * 1.001f + 0.001f);
  EXPECT_FALSE(check_forward(problem));
}

TEST_F(HarnessSelfCheck, CatchesAFiniteLseForARowWithoutKeys) {
  HostProblem problem = make_problem(row_, 7);  // causal, 47 queries, 31 keys: row 0 sees none
  run_reference(problem);
  set_element(problem, BufferId::lse, logical_offset(problem, BufferId::lse, 0), 0.0f);
  EXPECT_FALSE(check_forward(problem));
}

TEST_F(HarnessSelfCheck, CatchesANonzeroOutputForARowWithoutKeys) {
  HostProblem problem = make_problem(row_, 7);
  run_reference(problem);
  // Far below the 1e-5 slack of the criterion: only the exact-zero rule can catch it.
  set_element(problem, BufferId::out, logical_offset(problem, BufferId::out, 0), 1e-7f);
  EXPECT_FALSE(check_forward(problem));
}

TEST_F(HarnessSelfCheck, CatchesAWriteIntoAStrideGap) {
  HostProblem problem = make_problem(row_, 7);
  run_reference(problem);
  const std::vector<bool> logical = problem.logical_elements(BufferId::dq);
  const auto gap = std::find(logical.begin(), logical.end(), false);
  ASSERT_NE(gap, logical.end());
  set_element(problem, BufferId::dq, gap - logical.begin(), 0.0f);
  EXPECT_FALSE(check_backward(problem));
}

TEST_F(HarnessSelfCheck, CatchesAWrongGradient) {
  for (BufferId id : {BufferId::dq, BufferId::dk, BufferId::dv}) {
    HostProblem problem = make_problem(row_, 7);
    run_reference(problem);
    const int64_t offset = logical_offset(problem, id, 30 * 2 * 24 + 3);  // a key row in use
    set_element(problem, id, offset, get_element(problem, id, offset) + 0.5f);
    EXPECT_FALSE(check_backward(problem)) << buffer_name(id);
  }
}

TEST_F(HarnessSelfCheck, CatchesAWrongDropoutMask) {
  HostProblem problem = make_problem(row_, 7);
  run_reference(problem);
  // Last row of batch 0, head 0 sees every key: flip its first element.
  std::span<std::byte> mask = problem.bytes(BufferId::dropout_mask);
  const size_t index = 46 * 31;
  mask[index] = mask[index] == std::byte{0} ? std::byte{1} : std::byte{0};
  EXPECT_FALSE(check_forward(problem));
}

}  // namespace
}  // namespace flashattn::testing
