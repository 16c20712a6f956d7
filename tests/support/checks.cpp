// check_forward / check_backward: the DESIGN.md criterion applied to a HostProblem's outputs.
#include "support/checks.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

#include "api/normalize.h"
#include "common/score_mods.h"
#include "cpu/reference/reference.h"
#include "cpu/reference/sequences.h"
#include "cpu/reference/strided_io.h"
#include "flashattn/flashattn.h"

namespace flashattn::testing {
namespace {

using reference::Comparison;
using reference::SequenceBounds;
using reference::TensorSide;

// Params with the defaults resolved (scale, head_dim_v, window, LSE strides) and the
// sequence bounds; the strided readers need both.
template <typename Params>
struct Resolved {
  Params params;
  std::vector<SequenceBounds> sequences;
  Status status;
};

template <typename Params>
Resolved<Params> resolve(Params params) {
  Resolved<Params> resolved{params, {}, Status::Ok()};
  detail::normalize_args(resolved.params);
  if (resolved.params.lse.data != nullptr) {
    detail::normalize_lse(resolved.params, resolved.params.lse);
  }
  resolved.status = reference::sequence_bounds(resolved.params, &resolved.sequences);
  return resolved;
}

// Accumulates failure lines; the result passes when there are none.
class Report {
 public:
  explicit Report(const HostProblem& problem) {
    header_ = "case " + problem.config().name() + " (seed " + std::to_string(problem.seed()) + ")";
  }
  void fail(const std::string& line) { failures_ += "\n  " + line; }
  void comparison(const char* what, const Comparison& result, int64_t heads, int64_t dim) {
    // FLASHATTN_CHECK_VERBOSE=1 prints every comparison, to see how close passing cases come.
    static const bool verbose = std::getenv("FLASHATTN_CHECK_VERBOSE") != nullptr;
    if (verbose) std::printf("%s %s: %s\n", header_.c_str(), what, result.describe().c_str());
    if (result.passed) return;
    std::string where;
    if (result.worst_index >= 0 && heads > 0 && dim > 0) {
      where = " [dense row " + std::to_string(result.worst_index / (heads * dim)) + ", head " +
              std::to_string(result.worst_index / dim % heads) + ", dim " +
              std::to_string(result.worst_index % dim) + "]";
    }
    fail(std::string(what) + ": " + result.describe() + where);
  }
  ::testing::AssertionResult result() const {
    if (failures_.empty()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << header_ << failures_;
  }

 private:
  std::string header_;
  std::string failures_;
};

// Every element outside the logical ones must still hold the poison bytes.
void check_gaps_untouched(const HostProblem& problem, BufferId id, int64_t element_bytes,
                          Report* report) {
  const std::vector<bool> logical = problem.logical_elements(id);
  const std::span<const std::byte> bytes = problem.bytes(id);
  int64_t written = 0, first = -1;
  for (size_t element = 0; element < logical.size(); ++element) {
    if (logical[element]) continue;
    for (int64_t byte = 0; byte < element_bytes; ++byte) {
      if (bytes[element * static_cast<size_t>(element_bytes) + static_cast<size_t>(byte)] !=
          kPoisonByte) {
        if (first < 0) first = static_cast<int64_t>(element);
        ++written;
        break;
      }
    }
  }
  if (written > 0) {
    report->fail(std::string(buffer_name(id)) + ": " + std::to_string(written) +
                 " elements written in the stride gaps (first at element " + std::to_string(first) +
                 ")");
  }
}

// A row whose LSE is +inf saw no key: its out must be exactly 0.
void check_empty_rows(const ForwardParams& params, const std::vector<SequenceBounds>& sequences,
                      const std::vector<double>& ref_lse, const std::vector<double>& out,
                      Report* report) {
  int64_t bad_rows = 0;
  std::string first;
  for (int64_t b = 0; b < params.batch; ++b) {
    const SequenceBounds& sequence = sequences[static_cast<size_t>(b)];
    for (int64_t h = 0; h < params.heads_q; ++h) {
      for (int64_t row = 0; row < sequence.len_q; ++row) {
        const int64_t lse_index = reference::dense_lse_index(params, sequence, b, h, row);
        if (!std::isinf(ref_lse[static_cast<size_t>(lse_index)])) continue;
        const double* values =
            out.data() + ((sequence.q_row0 + row) * params.heads_q + h) * params.head_dim_v;
        for (int64_t d = 0; d < params.head_dim_v; ++d) {
          if (values[d] != 0.0) {
            if (bad_rows == 0) {
              first = "batch " + std::to_string(b) + " head " + std::to_string(h) + " row " +
                      std::to_string(row) + " has out " + std::to_string(values[d]);
            }
            ++bad_rows;
            break;
          }
        }
      }
    }
  }
  if (bad_rows > 0) {
    report->fail("out: " + std::to_string(bad_rows) +
                 " rows that see no key are not exactly 0 (first: " + first + ")");
  }
}

// The mask must match the oracle on every visible element; what a backend writes for masked
// or out-of-sequence elements is not part of the contract.
void check_dropout_mask(HostProblem& problem, const ForwardParams& params,
                        const std::vector<SequenceBounds>& sequences,
                        const std::vector<uint8_t>& ref_mask, Report* report) {
  const std::span<const std::byte> mask = problem.bytes(BufferId::dropout_mask);
  int64_t mismatches = 0;
  std::string first;
  for (int64_t b = 0; b < params.batch; ++b) {
    const SequenceBounds& sequence = sequences[static_cast<size_t>(b)];
    const MaskSpec spec{sequence.len_q, sequence.used_k, params.window_left, params.window_right};
    for (int64_t h = 0; h < params.heads_q; ++h) {
      for (int64_t row = 0; row < sequence.len_q; ++row) {
        for (int64_t col = spec.first_col(row); col < spec.last_col(row); ++col) {
          const size_t index = static_cast<size_t>(
              ((b * params.heads_q + h) * params.seqlen_q + row) * params.seqlen_k + col);
          const auto actual = static_cast<uint8_t>(mask[index]);
          if (actual == ref_mask[index]) continue;
          if (mismatches == 0) {
            first = "batch " + std::to_string(b) + " head " + std::to_string(h) + " row " +
                    std::to_string(row) + " col " + std::to_string(col) + ": got " +
                    std::to_string(actual) + ", expected " + std::to_string(ref_mask[index]);
          }
          ++mismatches;
        }
      }
    }
  }
  if (mismatches > 0) {
    report->fail("dropout_mask: " + std::to_string(mismatches) +
                 " visible elements differ from the oracle (first: " + first + ")");
  }
}

}  // namespace

std::vector<double> gather_output(HostProblem& problem, BufferId id) {
  const Resolved<BackwardParams> resolved = resolve(problem.backward_params());
  const BackwardParams& p = resolved.params;
  if (!resolved.status.ok()) return {};
  switch (id) {
    case BufferId::out:
      return reference::gather_tensor(p, resolved.sequences, TensorSide::query, p.out,
                                      dense_shape(p, TensorSide::query, p.heads_q, p.head_dim_v));
    case BufferId::dq:
      return reference::gather_tensor(p, resolved.sequences, TensorSide::query, p.dq,
                                      dense_shape(p, TensorSide::query, p.heads_q, p.head_dim));
    case BufferId::dk:
      return reference::gather_tensor(p, resolved.sequences, TensorSide::key, p.dk,
                                      dense_shape(p, TensorSide::key, p.heads_kv, p.head_dim));
    case BufferId::dv:
      return reference::gather_tensor(p, resolved.sequences, TensorSide::key, p.dv,
                                      dense_shape(p, TensorSide::key, p.heads_kv, p.head_dim_v));
    case BufferId::lse:
      if (p.lse.data == nullptr) return {};
      return reference::gather_lse(p, resolved.sequences, p.lse);
    default: return {};
  }
}

::testing::AssertionResult check_forward(HostProblem& problem, const CheckOptions& options) {
  Report report(problem);
  const Resolved<ForwardParams> resolved = resolve(problem.forward_params());
  if (!resolved.status.ok()) {
    report.fail("sequence bounds: " + resolved.status.message());
    return report.result();
  }
  const ForwardParams& params = resolved.params;
  reference::ForwardResult ref, lowp;
  for (auto [precision, result] : {std::pair{reference::Precision::fp64, &ref},
                                   std::pair{reference::Precision::input_dtype, &lowp}}) {
    if (Status status = reference::forward(params, precision, result); !status.ok()) {
      report.fail("reference forward failed: " + status.message());
      return report.result();
    }
  }
  const std::vector<double> out = gather_output(problem, BufferId::out);
  report.comparison("out", reference::compare(out, ref.out, lowp.out, options.output_multiplier),
                    params.heads_q, params.head_dim_v);
  if (params.lse.data != nullptr) {  // the LSE is optional in a forward
    report.comparison("lse", reference::compare_lse(gather_output(problem, BufferId::lse), ref.lse),
                      0, 0);
  }
  check_empty_rows(params, resolved.sequences, ref.lse, out, &report);
  if (params.dropout_p > 0.0f) {
    check_dropout_mask(problem, params, resolved.sequences, ref.dropout_mask, &report);
  }
  if (problem.config().layout != Layout::contiguous) {
    check_gaps_untouched(problem, BufferId::out, element_size(params.dtype), &report);
    check_gaps_untouched(problem, BufferId::lse, sizeof(float), &report);
  }
  return report.result();
}

::testing::AssertionResult check_backward(HostProblem& problem, const CheckOptions& options) {
  Report report(problem);
  const Resolved<BackwardParams> resolved = resolve(problem.backward_params());
  if (!resolved.status.ok()) {
    report.fail("sequence bounds: " + resolved.status.message());
    return report.result();
  }
  const BackwardParams& params = resolved.params;
  reference::BackwardResult ref, lowp;
  for (auto [precision, result] : {std::pair{reference::Precision::fp64, &ref},
                                   std::pair{reference::Precision::input_dtype, &lowp}}) {
    if (Status status = reference::backward(params, precision, result); !status.ok()) {
      report.fail("reference backward failed: " + status.message());
      return report.result();
    }
  }
  const double multiplier = options.gradient_multiplier;
  report.comparison(
      "dq", reference::compare(gather_output(problem, BufferId::dq), ref.dq, lowp.dq, multiplier),
      params.heads_q, params.head_dim);
  report.comparison(
      "dk", reference::compare(gather_output(problem, BufferId::dk), ref.dk, lowp.dk, multiplier),
      params.heads_kv, params.head_dim);
  report.comparison(
      "dv", reference::compare(gather_output(problem, BufferId::dv), ref.dv, lowp.dv, multiplier),
      params.heads_kv, params.head_dim_v);
  if (problem.config().layout != Layout::contiguous) {
    for (BufferId id : {BufferId::dq, BufferId::dk, BufferId::dv}) {
      check_gaps_untouched(problem, id, element_size(params.dtype), &report);
    }
  }
  return report.result();
}

Status fill_forward_outputs_with_reference(HostProblem& problem) {
  ForwardParams params = problem.forward_params();
  params.backend = Backend::cpu_reference;
  return flashattn::forward(params);
}

}  // namespace flashattn::testing
