// Checks of a backend's outputs in a HostProblem against the fp64 oracle (DESIGN.md criterion).
//
// Typical use (any backend, any device once its outputs are copied back to the host buffers):
//   HostProblem problem = make_problem(row, seed);
//   ForwardParams fwd = problem.forward_params();  fwd.backend = Backend::cpu_tiled;
//   ASSERT_TRUE(flashattn::forward(fwd).ok());
//   EXPECT_TRUE(check_forward(problem));
//   BackwardParams bwd = problem.backward_params(); bwd.backend = Backend::cpu_tiled;
//   ASSERT_TRUE(flashattn::backward(bwd).ok());     // uses the out / lse just written
//   EXPECT_TRUE(check_backward(problem));
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "flashattn/types.h"
#include "support/host_problem.h"

namespace flashattn::testing {

struct CheckOptions {
  double output_multiplier = 2.0;    // DESIGN.md: outputs
  double gradient_multiplier = 3.0;  // DESIGN.md: gradients
};

// The strided output `id` (out, dq, dk, dv, or lse) of the host buffers as dense doubles in
// the oracle's layout (cpu/reference/sequences.h).
std::vector<double> gather_output(HostProblem& problem, BufferId id);

// out (2x criterion), LSE (1e-4 relative, +inf matching), rows that see no key (out exactly
// 0), the dropout mask (equal to the oracle's on every visible element) and, for strided
// layouts, that the gaps of out and lse still hold the poison.
::testing::AssertionResult check_forward(HostProblem& problem, const CheckOptions& options = {});

// dq, dk, dv (3x criterion) against the oracle's backward of the same inputs, and untouched
// gaps for strided layouts.
::testing::AssertionResult check_backward(HostProblem& problem, const CheckOptions& options = {});

// Runs Backend::cpu_reference forward on the host buffers (fills out, lse, dropout mask), for
// tests of a backward in isolation.
Status fill_forward_outputs_with_reference(HostProblem& problem);

}  // namespace flashattn::testing
