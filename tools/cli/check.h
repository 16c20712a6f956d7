// --check: the results of a run against the fp64 reference, by the DESIGN.md criterion.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cpu/reference/reference.h"
#include "problem.h"
#include "tensors.h"

namespace flashattn::cli {

struct CheckEntry {
  std::string name;  // out, lse, dq, dk, dv
  reference::Comparison comparison;
};

struct CheckResult {
  // The reference is naive and O(seqlen_q * seqlen_k) per head, so a large problem is checked
  // on a prefix: the first `batches` sequences with every head, or the first sequence with
  // the first `heads_q` query heads (whole GQA groups).
  int64_t batches = 0;
  int64_t heads_q = 0;
  bool complete = true;
  std::vector<CheckEntry> entries;
  // --deterministic: whether one more backward reproduced dq, dk, dv bit for bit.
  std::optional<bool> reproducible;
  double seconds = 0;

  bool passed() const;
};

// `host` holds the run's inputs and outputs in host memory. Returns the reference's Status
// when it cannot run the problem.
Status check_against_reference(const Problem& problem, const Tensors& host, CheckResult* result);

// Runs `run_backward` once more and records whether dq, dk, dv came out bitwise the same.
Status check_reproducible(const Tensors& tensors, const std::function<Status()>& run_backward,
                          CheckResult* result);

}  // namespace flashattn::cli
