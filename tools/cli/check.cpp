// --check: the results of a run against the fp64 reference, by the DESIGN.md criterion.
#include "check.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "attention_params.h"
#include "cpu/element.h"

namespace flashattn::cli {
namespace {

// Reference work allowed for one check per CPU thread, in (query, key, dim) steps of the naive
// algorithm: about half a minute (two loaded cores run ~3e9 steps per second).
constexpr double kReferenceStepsPerThread = 5e10;

// Naive steps of the reference runs for one (sequence, query head): every (query, key) pair
// is scored whatever the mask; fp64 and input-dtype forward, and backward (about 2.5x each).
double reference_steps(const Problem& problem, SequenceLengths lengths) {
  const double passes = problem.run_backward ? 7.0 : 2.0;
  return passes * static_cast<double>(lengths.q) * static_cast<double>(lengths.k) *
         static_cast<double>(problem.head_dim + problem.head_dim_v);
}

// Picks the prefix to check: everything, else whole sequences, else GQA groups of sequence 0.
void choose_scope(const Problem& problem, CheckResult* result) {
  const double budget = kReferenceStepsPerThread * problem.cpu_threads();
  const double heads = static_cast<double>(problem.heads_q);
  double steps = 0;
  int64_t batches = 0;
  while (batches < problem.batch) {
    const double more = reference_steps(problem, problem.lengths(batches)) * heads;
    if (batches > 0 && steps + more > budget) break;
    if (batches == 0 && more > budget) break;
    steps += more;
    ++batches;
  }
  result->complete = batches == problem.batch;
  if (batches > 0) {
    result->batches = batches;
    result->heads_q = problem.heads_q;
    return;
  }
  const int64_t group = problem.heads_q / problem.heads_kv;
  const double per_group =
      reference_steps(problem, problem.lengths(0)) * static_cast<double>(group);
  const int64_t groups = std::max<int64_t>(1, static_cast<int64_t>(budget / per_group));
  result->batches = 1;
  result->heads_q = std::min(problem.heads_q, groups * group);
}

// Element (b, r, h, d) of a contiguous [batches, rows, heads_full, dim] buffer, for the first
// `heads` heads, as doubles in [batches, rows, heads, dim] order.
std::vector<double> gather(const Buffer& buffer, DType dtype, int64_t batches, int64_t rows,
                           int64_t heads_full, int64_t heads, int64_t dim) {
  std::vector<double> values;
  values.reserve(static_cast<size_t>(batches * rows * heads * dim));
  for (int64_t b = 0; b < batches; ++b) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t base = ((b * rows + r) * heads_full + h) * dim;
        for (int64_t d = 0; d < dim; ++d) {
          values.push_back(cpu::load_as_float(buffer.data(), base + d, dtype));
        }
      }
    }
  }
  return values;
}

// The LSE [batches, heads_full, rows_full] restricted to [batches, heads, rows].
std::vector<double> gather_lse(const Buffer& buffer, int64_t batches, int64_t heads_full,
                               int64_t heads, int64_t rows_full, int64_t rows) {
  const float* lse = static_cast<const float*>(buffer.data());
  std::vector<double> values;
  values.reserve(static_cast<size_t>(batches * heads * rows));
  for (int64_t b = 0; b < batches; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < rows; ++i)
        values.push_back(lse[(b * heads_full + h) * rows_full + i]);
    }
  }
  return values;
}

// Narrows params to the checked prefix. Strides still describe the full buffers.
void restrict_to_scope(const Problem& problem, const CheckResult& scope, AttentionArgs* args,
                       LseRef* lse) {
  args->batch = scope.batches;
  args->heads_q = scope.heads_q;
  args->heads_kv = scope.heads_q / (problem.heads_q / problem.heads_kv);
  if (problem.varlen()) {
    // seqlen_q / seqlen_k stay the whole batch's maxima: still bounds for the prefix.
    const SequenceLengths tokens = problem.tokens(scope.batches);
    args->total_q = tokens.q;
    args->total_k = tokens.k;
    lse->batch_stride = 0;
    lse->head_stride = problem.total_q();
  } else {
    lse->batch_stride = problem.heads_q * problem.seqlen_q;
    lse->head_stride = problem.seqlen_q;
  }
}

}  // namespace

bool CheckResult::passed() const {
  return !entries.empty() && reproducible.value_or(true) &&
         std::all_of(entries.begin(), entries.end(),
                     [](const CheckEntry& entry) { return entry.comparison.passed; });
}

Status check_reproducible(const Tensors& tensors, const std::function<Status()>& run_backward,
                          CheckResult* result) {
  const Buffer* gradients[] = {&tensors.dq, &tensors.dk, &tensors.dv};
  std::vector<Buffer> before;
  for (const Buffer* gradient : gradients) before.push_back(gradient->to_host());
  if (Status s = run_backward(); !s.ok()) return s;
  bool same = true;
  for (size_t i = 0; i < before.size(); ++i) {
    const Buffer after = gradients[i]->to_host();
    same = same && std::memcmp(before[i].data(), after.data(), after.bytes()) == 0;
  }
  result->reproducible = same;
  return Status::Ok();
}

Status check_against_reference(const Problem& problem, const Tensors& host, CheckResult* result) {
  const auto start = std::chrono::steady_clock::now();
  if (problem.heads_kv < 1 || problem.heads_q % problem.heads_kv != 0) {
    return Status::InvalidArgument("heads_kv: must divide heads_q for the check");
  }
  choose_scope(problem, result);
  const int64_t heads_q = result->heads_q;
  const int64_t heads_kv = heads_q / (problem.heads_q / problem.heads_kv);
  // Varlen buffers are packed: the checked prefix is one "batch" of its first tokens.
  const bool varlen = problem.varlen();
  const SequenceLengths rows = varlen ? problem.tokens(result->batches)
                                      : SequenceLengths{problem.seqlen_q, problem.seqlen_k};
  const int64_t rows_q = rows.q, rows_k = rows.k;
  const int64_t outer = varlen ? 1 : result->batches;
  const int64_t lse_rows_full = varlen ? problem.total_q() : problem.seqlen_q;
  const DType dtype = problem.dtype;

  ForwardParams forward = forward_params(problem, host);
  restrict_to_scope(problem, *result, &forward, &forward.lse);
  reference::ForwardResult exact, lowp;
  if (Status s = reference::forward(forward, reference::Precision::fp64, &exact); !s.ok()) return s;
  if (Status s = reference::forward(forward, reference::Precision::input_dtype, &lowp); !s.ok()) {
    return s;
  }
  const std::vector<double> out =
      gather(host.out, dtype, outer, rows_q, problem.heads_q, heads_q, problem.head_dim_v);
  const std::vector<double> lse =
      gather_lse(host.lse, outer, problem.heads_q, heads_q, lse_rows_full, rows_q);
  result->entries.push_back({"out", reference::compare(out, exact.out, lowp.out, 2.0)});
  result->entries.push_back({"lse", reference::compare_lse(lse, exact.lse)});

  if (problem.run_backward) {
    BackwardParams backward = backward_params(problem, host);
    restrict_to_scope(problem, *result, &backward, &backward.lse);
    reference::BackwardResult grads_exact, grads_lowp;
    if (Status s = reference::backward(backward, reference::Precision::fp64, &grads_exact);
        !s.ok()) {
      return s;
    }
    if (Status s = reference::backward(backward, reference::Precision::input_dtype, &grads_lowp);
        !s.ok()) {
      return s;
    }
    const auto dq =
        gather(host.dq, dtype, outer, rows_q, problem.heads_q, heads_q, problem.head_dim);
    const auto dk =
        gather(host.dk, dtype, outer, rows_k, problem.heads_kv, heads_kv, problem.head_dim);
    const auto dv =
        gather(host.dv, dtype, outer, rows_k, problem.heads_kv, heads_kv, problem.head_dim_v);
    result->entries.push_back({"dq", reference::compare(dq, grads_exact.dq, grads_lowp.dq, 3.0)});
    result->entries.push_back({"dk", reference::compare(dk, grads_exact.dk, grads_lowp.dk, 3.0)});
    result->entries.push_back({"dv", reference::compare(dv, grads_exact.dv, grads_lowp.dv, 3.0)});
  }
  result->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return Status::Ok();
}

}  // namespace flashattn::cli
