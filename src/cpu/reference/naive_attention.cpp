// The naive attention algorithm (forward and backward) on dense arrays: the oracle's core.
//
// One query row at a time: scores of every visible key, softmax, dropout, then out (forward) or
// the row's contributions to dq, dk, dv (backward). Memory is O(seqlen_k) per row besides the
// dk/dv accumulators. Real is double for Precision::fp64 and float for Precision::input_dtype,
// where every intermediate a framework would materialise (S, P, P dropped, O, dP, dS, grads)
// is rounded to the input dtype.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "api/normalize.h"
#include "common/philox.h"
#include "common/score_mods.h"
#include "cpu/element.h"
#include "cpu/reference/reference.h"
#include "cpu/reference/sequences.h"

namespace flashattn::reference {
namespace {

// Rounding of the materialised intermediates: none in fp64, to the input dtype otherwise.
template <typename Real>
struct Rounding {
  DType dtype;
  Real operator()(Real value) const {
    if constexpr (std::is_same_v<Real, double>) {
      return value;
    } else {
      return cpu::round_to(dtype, value);
    }
  }
};

// Dot product. In fp64 four partial sums let the multiply-adds overlap (the order only moves
// the result by ~1e-16). In input_dtype mode the sum runs strictly in order, as the naive loop
// does: ref_lowp defines the criterion's bound, so it must be the plain algorithm, not a more
// accurate one.
template <typename Real>
Real dot_product(const Real* a, const Real* b, int64_t n) {
  if constexpr (!std::is_same_v<Real, double>) {
    Real sum = 0;
    for (int64_t d = 0; d < n; ++d) sum += a[d] * b[d];
    return sum;
  } else {
    Real partial[4] = {0, 0, 0, 0};
    int64_t d = 0;
    for (; d + 4 <= n; d += 4) {
      partial[0] += a[d] * b[d];
      partial[1] += a[d + 1] * b[d + 1];
      partial[2] += a[d + 2] * b[d + 2];
      partial[3] += a[d + 3] * b[d + 3];
    }
    for (; d < n; ++d) partial[0] += a[d] * b[d];
    return (partial[0] + partial[1]) + (partial[2] + partial[3]);
  }
}

// The problem in working precision plus everything the per-row step needs.
template <typename Real>
struct Problem {
  AttentionArgs args;
  std::vector<SequenceBounds> sequences;
  Rounding<Real> round;
  std::vector<Real> q, k, v;
  Real scale, softcap, dropout_rescale;
  uint32_t keep_threshold;  // dropout_keep_threshold(p), on 16-bit values
  int64_t group;            // heads_q / heads_kv

  const Real* q_row(int64_t row, int64_t head) const {
    return q.data() + (row * args.heads_q + head) * args.head_dim;
  }
  const Real* k_row(int64_t row, int64_t head) const {
    return k.data() + (row * args.heads_kv + head) * args.head_dim;
  }
  const Real* v_row(int64_t row, int64_t head) const {
    return v.data() + (row * args.heads_kv + head) * args.head_dim_v;
  }
};

// One query row after the softmax: columns [first, last) are the visible keys.
template <typename Real>
struct RowState {
  int64_t first = 0, last = 0;
  std::vector<Real> capped;   // softcap(scale * dot) without the bias (for its derivative)
  std::vector<Real> prob;     // softmax probability P
  std::vector<Real> dropped;  // P after dropout and 1/(1-p) rescaling
  std::vector<uint8_t> kept;
  double lse = std::numeric_limits<double>::infinity();
  bool empty() const { return first >= last; }
};

template <typename Real>
void compute_row(const Problem<Real>& problem, int64_t batch_index, int64_t head, int64_t row,
                 RowState<Real>* state) {
  const AttentionArgs& args = problem.args;
  const SequenceBounds& sequence = problem.sequences[static_cast<size_t>(batch_index)];
  const MaskSpec mask{sequence.len_q, sequence.used_k, args.window_left, args.window_right};
  state->first = mask.first_col(row);
  state->last = mask.last_col(row);
  state->lse = std::numeric_limits<double>::infinity();
  if (state->empty()) return;
  const int64_t count = state->last - state->first;
  state->capped.resize(static_cast<size_t>(count));
  state->prob.resize(static_cast<size_t>(count));
  state->dropped.resize(static_cast<size_t>(count));
  state->kept.resize(static_cast<size_t>(count));

  const Real slope =
      args.alibi_slopes != nullptr
          ? static_cast<Real>(args.alibi_slopes[batch_index * args.alibi_batch_stride + head])
          : Real(0);
  const int64_t kv_head = head / problem.group;
  const Real* query = problem.q_row(sequence.q_row0 + row, head);
  std::vector<Real>& scores = state->prob;  // scores first, probabilities after the softmax
  Real row_max = -std::numeric_limits<Real>::infinity();
  for (int64_t j = 0; j < count; ++j) {
    const int64_t col = state->first + j;
    const Real dot =
        dot_product(query, problem.k_row(sequence.k_row0 + col, kv_head), args.head_dim);
    const Real bias =
        args.alibi_slopes != nullptr ? alibi_bias<Real>(slope, row, col, mask.diagonal()) : Real(0);
    // modified_score(dot, scale, softcap, bias) == capped + bias; capped is kept separately
    // because the backward's softcap derivative needs it.
    state->capped[j] = modified_score<Real>(dot, problem.scale, problem.softcap, Real(0));
    scores[j] = problem.round(state->capped[j] + bias);
    row_max = std::max(row_max, scores[j]);
  }
  Real sum = 0;
  for (int64_t j = 0; j < count; ++j) {
    scores[j] = std::exp(scores[j] - row_max);
    sum += scores[j];
  }
  state->lse = static_cast<double>(row_max + std::log(sum));  // fp32 LSE in input_dtype mode
  const uint32_t batch_head = static_cast<uint32_t>(batch_index * args.heads_q + head);
  for (int64_t j = 0; j < count; ++j) {
    state->prob[j] = problem.round(scores[j] / sum);
    bool keep = true;
    if (args.dropout_p > 0.0f) {
      keep = dropout_keeps(args.dropout_seed, args.dropout_offset, batch_head,
                           static_cast<uint32_t>(row), static_cast<uint32_t>(state->first + j),
                           problem.keep_threshold);
    }
    state->kept[j] = keep ? 1 : 0;
    state->dropped[j] = keep ? problem.round(state->prob[j] * problem.dropout_rescale) : Real(0);
  }
}

// out_row = round(sum_j dropped_j * v_j), accumulated in Real.
template <typename Real>
void row_output(const Problem<Real>& problem, const SequenceBounds& sequence, int64_t kv_head,
                const RowState<Real>& state, Real* out_row) {
  const int64_t dim_v = problem.args.head_dim_v;
  std::fill(out_row, out_row + dim_v, Real(0));
  for (int64_t j = 0; j < state.last - state.first; ++j) {
    const Real weight = state.dropped[j];
    if (weight == Real(0)) continue;
    const Real* value = problem.v_row(sequence.k_row0 + state.first + j, kv_head);
    for (int64_t d = 0; d < dim_v; ++d) out_row[d] += weight * value[d];
  }
  for (int64_t d = 0; d < dim_v; ++d) out_row[d] = problem.round(out_row[d]);
}

int thread_count(const AttentionArgs& args) {
  return args.num_threads > 0 ? args.num_threads : omp_get_max_threads();
}

// Checks the size arguments the dense path relies on (the strided path validated them
// already); failures name the argument.
Status check_dense_args(const AttentionArgs& args) {
  auto bad = [](const std::string& what) { return Status::InvalidArgument(what); };
  if (args.batch < 0) return bad("batch: expected >= 0, got " + std::to_string(args.batch));
  if (args.seqlen_q < 0 || args.seqlen_k < 0) return bad("seqlen: expected >= 0");
  if (args.heads_q < 1 || args.heads_kv < 1 || args.heads_q % args.heads_kv != 0) {
    return bad("heads: heads_kv " + std::to_string(args.heads_kv) + " does not divide heads_q " +
               std::to_string(args.heads_q));
  }
  if (args.head_dim < 1) return bad("head_dim: expected >= 1");
  if (args.head_dim_v < 1) return bad("head_dim_v: expected >= 1");
  if (!(args.dropout_p >= 0.0f && args.dropout_p < 1.0f)) {
    return bad("dropout_p: expected in [0, 1), got " + std::to_string(args.dropout_p));
  }
  if (!(args.softcap >= 0.0f)) return bad("softcap: expected >= 0");
  return Status::Ok();
}

template <typename Real>
Status make_problem(const AttentionArgs& given, std::span<const double> q,
                    std::span<const double> k, std::span<const double> v, Problem<Real>* problem) {
  problem->args = given;
  AttentionArgs& args = problem->args;
  detail::normalize_args(args);
  if (Status status = check_dense_args(args); !status.ok()) return status;
  if (Status status = sequence_bounds(args, &problem->sequences); !status.ok()) return status;
  const auto expect = [](std::span<const double> data, int64_t size, const char* name) {
    return static_cast<int64_t>(data.size()) == size
               ? Status::Ok()
               : Status::InvalidArgument(std::string(name) + ": expected " + std::to_string(size) +
                                         " dense elements, got " + std::to_string(data.size()));
  };
  const int64_t q_size = rows_q(args) * args.heads_q * args.head_dim;
  const int64_t k_size = rows_k(args) * args.heads_kv * args.head_dim;
  const int64_t v_size = rows_k(args) * args.heads_kv * args.head_dim_v;
  if (Status s = expect(q, q_size, "q"); !s.ok()) return s;
  if (Status s = expect(k, k_size, "k"); !s.ok()) return s;
  if (Status s = expect(v, v_size, "v"); !s.ok()) return s;

  problem->round = Rounding<Real>{args.dtype};
  const auto convert = [&](std::span<const double> source, std::vector<Real>* target) {
    target->resize(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      (*target)[i] = problem->round(static_cast<Real>(source[i]));
    }
  };
  convert(q, &problem->q);
  convert(k, &problem->k);
  convert(v, &problem->v);
  problem->scale = static_cast<Real>(args.softmax_scale);
  problem->softcap = static_cast<Real>(args.softcap);
  problem->dropout_rescale = Real(1) / (Real(1) - static_cast<Real>(args.dropout_p));
  problem->keep_threshold = dropout_keep_threshold(args.dropout_p);
  problem->group = args.heads_q / args.heads_kv;
  return Status::Ok();
}

template <typename Real>
Status run_forward(const AttentionArgs& given, std::span<const double> q, std::span<const double> k,
                   std::span<const double> v, ForwardResult* result, uint8_t* dropout_mask) {
  Problem<Real> problem;
  if (Status status = make_problem(given, q, k, v, &problem); !status.ok()) {
    return status;
  }
  const AttentionArgs& args = problem.args;
  const int64_t dim_v = args.head_dim_v;
  result->out.assign(static_cast<size_t>(rows_q(args) * args.heads_q * dim_v), 0.0);
  result->lse.assign(
      static_cast<size_t>(is_varlen_args(args) ? args.heads_q * args.total_q
                                               : args.batch * args.heads_q * args.seqlen_q),
      std::numeric_limits<double>::infinity());
  const bool write_mask = dropout_mask != nullptr && args.dropout_p > 0.0f;
  const int64_t mask_row = args.seqlen_k;
  if (write_mask) {
    std::memset(dropout_mask, 0,
                static_cast<size_t>(args.batch * args.heads_q * args.seqlen_q * args.seqlen_k));
  }

  // Rows are independent: one task per (batch, head, row) of the padded [batch, heads_q,
  // seqlen_q] grid (rows past a varlen sequence's length do nothing).
  const int64_t tasks = args.batch * args.heads_q * args.seqlen_q;
#pragma omp parallel num_threads(thread_count(args))
  {
    RowState<Real> state;
    std::vector<Real> out_row(static_cast<size_t>(dim_v));
#pragma omp for schedule(dynamic, 16)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t item = task / args.seqlen_q;  // batch * heads_q + head
      const int64_t row = task % args.seqlen_q;
      const int64_t batch_index = item / args.heads_q;
      const int64_t head = item % args.heads_q;
      const SequenceBounds& sequence = problem.sequences[static_cast<size_t>(batch_index)];
      if (row >= sequence.len_q) continue;
      compute_row(problem, batch_index, head, row, &state);
      result->lse[static_cast<size_t>(dense_lse_index(args, sequence, batch_index, head, row))] =
          state.lse;
      if (state.empty()) continue;  // out stays 0
      row_output(problem, sequence, head / problem.group, state, out_row.data());
      double* out = result->out.data() + ((sequence.q_row0 + row) * args.heads_q + head) * dim_v;
      for (int64_t d = 0; d < dim_v; ++d) out[d] = static_cast<double>(out_row[d]);
      if (write_mask) {
        uint8_t* mask = dropout_mask + (item * args.seqlen_q + row) * mask_row;
        for (int64_t j = 0; j < state.last - state.first; ++j) {
          mask[state.first + j] = state.kept[j];
        }
      }
    }
  }
  return Status::Ok();
}

template <typename Real>
Status run_backward(const AttentionArgs& given, std::span<const double> q,
                    std::span<const double> k, std::span<const double> v,
                    std::span<const double> dout, std::span<const double> given_out,
                    BackwardResult* result) {
  Problem<Real> problem;
  if (Status status = make_problem(given, q, k, v, &problem); !status.ok()) {
    return status;
  }
  const AttentionArgs& args = problem.args;
  const int64_t dim = args.head_dim, dim_v = args.head_dim_v;
  const size_t out_size = static_cast<size_t>(rows_q(args) * args.heads_q * dim_v);
  if (dout.size() != out_size) {
    return Status::InvalidArgument("dout: expected " + std::to_string(out_size) +
                                   " dense elements, got " + std::to_string(dout.size()));
  }
  if (!given_out.empty() && given_out.size() != out_size) {
    return Status::InvalidArgument("out: expected " + std::to_string(out_size) +
                                   " dense elements, got " + std::to_string(given_out.size()));
  }
  std::vector<Real> dout_work(dout.size()), out_work(given_out.size());
  for (size_t i = 0; i < dout.size(); ++i) dout_work[i] = problem.round(static_cast<Real>(dout[i]));
  for (size_t i = 0; i < given_out.size(); ++i) {
    out_work[i] = problem.round(static_cast<Real>(given_out[i]));
  }
  result->dq.assign(problem.q.size(), 0.0);
  result->dk.assign(problem.k.size(), 0.0);
  result->dv.assign(problem.v.size(), 0.0);

  // (batch, kv head) pairs one after the other; inside, the query rows of the head group are
  // shared among threads, each summing dk/dv into its own partial, and the partials are
  // added in thread order: the same thread count always gives the same bits.
  const int threads = thread_count(args);
  std::vector<std::vector<Real>> dk_parts(static_cast<size_t>(threads));
  std::vector<std::vector<Real>> dv_parts(static_cast<size_t>(threads));
  for (int64_t item = 0; item < args.batch * args.heads_kv; ++item) {
    const int64_t batch_index = item / args.heads_kv;
    const int64_t kv_head = item % args.heads_kv;
    const SequenceBounds& sequence = problem.sequences[static_cast<size_t>(batch_index)];
    const int64_t tasks = problem.group * sequence.len_q;
    if (tasks == 0 || sequence.used_k == 0) continue;  // gradients stay 0
    // OpenMP may grant fewer threads than asked: parts left empty are skipped in the sum.
    for (std::vector<Real>& part : dk_parts) part.clear();
    for (std::vector<Real>& part : dv_parts) part.clear();
#pragma omp parallel num_threads(threads)
    {
      std::vector<Real>& dk_acc = dk_parts[static_cast<size_t>(omp_get_thread_num())];
      std::vector<Real>& dv_acc = dv_parts[static_cast<size_t>(omp_get_thread_num())];
      dk_acc.assign(static_cast<size_t>(sequence.used_k * dim), Real(0));
      dv_acc.assign(static_cast<size_t>(sequence.used_k * dim_v), Real(0));
      std::vector<Real> out_row(static_cast<size_t>(dim_v)), dq_acc(static_cast<size_t>(dim));
      RowState<Real> state;
#pragma omp for schedule(static, 1)
      for (int64_t task = 0; task < tasks; ++task) {
        const int64_t head = kv_head * problem.group + task / sequence.len_q;
        const int64_t row = task % sequence.len_q;
        compute_row(problem, batch_index, head, row, &state);
        if (state.empty()) continue;  // no key seen: no gradient flows through this row
        const int64_t q_index = (sequence.q_row0 + row) * args.heads_q + head;
        const Real* dout_row = dout_work.data() + q_index * dim_v;
        const Real* out_values = out_row.data();
        if (given_out.empty()) {
          row_output(problem, sequence, kv_head, state, out_row.data());
        } else {
          out_values = out_work.data() + q_index * dim_v;
        }
        const Real row_delta = dot_product(dout_row, out_values, dim_v);  // D
        const Real* query = problem.q_row(sequence.q_row0 + row, head);
        std::fill(dq_acc.begin(), dq_acc.end(), Real(0));
        for (int64_t j = 0; j < state.last - state.first; ++j) {
          const int64_t col = state.first + j;
          const Real* key = problem.k_row(sequence.k_row0 + col, kv_head);
          const Real* value = problem.v_row(sequence.k_row0 + col, kv_head);
          Real* dv_col = dv_acc.data() + col * dim_v;
          Real* dk_col = dk_acc.data() + col * dim;
          const Real dropped = state.dropped[j];
          for (int64_t d = 0; d < dim_v; ++d) dv_col[d] += dropped * dout_row[d];
          const Real dprob = problem.round(dot_product(dout_row, value, dim_v));
          const Real dprob_kept =
              state.kept[j] ? problem.round(dprob * problem.dropout_rescale) : Real(0);
          const Real dscore = problem.round(state.prob[j] * (dprob_kept - row_delta));
          const Real ddot = problem.round(
              dscore * modified_score_grad<Real>(state.capped[j], problem.scale, problem.softcap));
          if (ddot == Real(0)) continue;
          for (int64_t d = 0; d < dim; ++d) dq_acc[d] += ddot * key[d];
          for (int64_t d = 0; d < dim; ++d) dk_col[d] += ddot * query[d];
        }
        double* dq = result->dq.data() + q_index * dim;
        for (int64_t d = 0; d < dim; ++d) dq[d] = static_cast<double>(problem.round(dq_acc[d]));
      }
    }
    for (int64_t col = 0; col < sequence.used_k; ++col) {
      const int64_t k_index = (sequence.k_row0 + col) * args.heads_kv + kv_head;
      for (int64_t d = 0; d < dim; ++d) {
        Real sum = 0;
        for (const std::vector<Real>& part : dk_parts) {
          if (!part.empty()) sum += part[static_cast<size_t>(col * dim + d)];
        }
        result->dk[static_cast<size_t>(k_index * dim + d)] =
            static_cast<double>(problem.round(sum));
      }
      for (int64_t d = 0; d < dim_v; ++d) {
        Real sum = 0;
        for (const std::vector<Real>& part : dv_parts) {
          if (!part.empty()) sum += part[static_cast<size_t>(col * dim_v + d)];
        }
        result->dv[static_cast<size_t>(k_index * dim_v + d)] =
            static_cast<double>(problem.round(sum));
      }
    }
  }
  return Status::Ok();
}

}  // namespace

Status forward_dense(const AttentionArgs& args, Precision precision, std::span<const double> q,
                     std::span<const double> k, std::span<const double> v, ForwardResult* result,
                     uint8_t* dropout_mask) {
  if (precision == Precision::fp64) {
    return run_forward<double>(args, q, k, v, result, dropout_mask);
  }
  return run_forward<float>(args, q, k, v, result, dropout_mask);
}

Status backward_dense(const AttentionArgs& args, Precision precision, std::span<const double> q,
                      std::span<const double> k, std::span<const double> v,
                      std::span<const double> dout, std::span<const double> given_out,
                      BackwardResult* result) {
  if (precision == Precision::fp64) {
    return run_backward<double>(args, q, k, v, dout, given_out, result);
  }
  return run_backward<float>(args, q, k, v, dout, given_out, result);
}

}  // namespace flashattn::reference
