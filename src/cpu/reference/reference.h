// The fp64 oracle and the DESIGN.md correctness criterion, for tests and the CLI's --check.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "flashattn/params.h"
#include "flashattn/types.h"

namespace flashattn::reference {

// How the naive algorithm computes.
enum class Precision {
  fp64,         // every step in double: the oracle
  input_dtype,  // like a framework running the naive algorithm in the input dtype: fp32
                // accumulation, but S, P and O rounded to the dtype after each step
                // (ref_lowp of the criterion)
};

// Dense results, independent of the caller's strides.
//   out: [batch, seqlen_q, heads_q, head_dim_v] (varlen: [total_q, heads_q, head_dim_v])
//   lse: [batch, heads_q, seqlen_q]             (varlen: [heads_q, total_q]); +inf for rows
//        that see no key
//   dropout_mask: only when dropout_p > 0 and params.dropout_mask is set (the caller asked for
//        it): uint8 [batch, heads_q, seqlen_q, seqlen_k] (seqlen maxima in varlen), 1 where the
//        element is visible and kept, 0 where it is dropped, masked or outside the sequence.
struct ForwardResult {
  std::vector<double> out;
  std::vector<double> lse;
  std::vector<uint8_t> dropout_mask;
};

// Dense gradients: dq like q, dk like k, dv like v (dense, varlen packed likewise).
struct BackwardResult {
  std::vector<double> dq;
  std::vector<double> dk;
  std::vector<double> dv;
};

// Params exactly as given to flashattn::forward / backward (validated and normalised here).
// The outputs named in the params (out, lse, dq, ...) are neither read nor written, except
// that backward reads params.out only for D = rowsum(dout * out) when `use_given_out` is set
// (otherwise it recomputes out itself in the same precision).
Status forward(const ForwardParams& params, Precision precision, ForwardResult* result);
Status backward(const BackwardParams& params, Precision precision, BackwardResult* result,
                bool use_given_out = false);

// The same algorithm on dense double arrays in the layout of cpu/reference/sequences.h
// (q [rows_q, heads_q, head_dim], k [rows_k, heads_kv, head_dim], v [rows_k, heads_kv,
// head_dim_v], dout and given_out like out). The TensorRefs and outputs of `args` are ignored;
// cu_seqlens, seqused_k and alibi_slopes are read from host memory. `args` may be given
// before or after normalisation. With Precision::input_dtype the inputs are first rounded to
// args.dtype. Lets tests perturb inputs in double (finite differences).
// dropout_mask (optional, when dropout_p > 0): written as ForwardResult::dropout_mask.
Status forward_dense(const AttentionArgs& args, Precision precision, std::span<const double> q,
                     std::span<const double> k, std::span<const double> v, ForwardResult* result,
                     uint8_t* dropout_mask = nullptr);
// given_out empty: out is recomputed in the same precision for D = rowsum(dout * out).
Status backward_dense(const AttentionArgs& args, Precision precision, std::span<const double> q,
                      std::span<const double> k, std::span<const double> v,
                      std::span<const double> dout, std::span<const double> given_out,
                      BackwardResult* result);

// The DESIGN.md criterion: passes when max|actual - ref| <= multiplier * max|ref_lowp - ref|
// + 1e-5 and nothing is NaN. multiplier is 2 for outputs, 3 for gradients.
struct Comparison {
  double max_error = 0;        // max |actual - ref|
  double lowp_error = 0;       // max |ref_lowp - ref|
  double tolerance = 0;        // multiplier * lowp_error + 1e-5
  int64_t worst_index = -1;    // where max_error occurs (or the first NaN)
  double worst_actual = 0;     // actual[worst_index]
  double worst_ref = 0;        // ref[worst_index]
  int64_t nan_count = 0;       // NaN in actual (never passes)
  bool size_mismatch = false;  // actual and ref differ in length (never passes)
  bool relative = false;       // compare_lse: errors are relative, tolerance 1e-4
  bool passed = false;
  std::string describe() const;  // one line for test failures and the CLI
};
Comparison compare(std::span<const double> actual, std::span<const double> ref,
                   std::span<const double> ref_lowp, double multiplier);

// LSE check: |actual - ref| <= 1e-4 * max(|ref|, 1) (+inf must match +inf exactly). The floor
// of 1 keeps "relative" meaningful where the LSE crosses 0 (e.g. one visible key whose score
// is near 0), where a purely relative bound would demand more than fp32 holds.
Comparison compare_lse(std::span<const double> actual, std::span<const double> ref);

}  // namespace flashattn::reference
