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
struct ForwardResult {
  std::vector<double> out;
  std::vector<double> lse;
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

// The DESIGN.md criterion: passes when max|actual - ref| <= multiplier * max|ref_lowp - ref|
// + 1e-5 and nothing is NaN. multiplier is 2 for outputs, 3 for gradients.
struct Comparison {
  double max_error = 0;       // max |actual - ref|
  double lowp_error = 0;      // max |ref_lowp - ref|
  double tolerance = 0;       // multiplier * lowp_error + 1e-5
  int64_t worst_index = -1;   // where max_error occurs (or the first NaN)
  int64_t nan_count = 0;      // NaN in actual (never passes)
  bool passed = false;
  std::string describe() const;  // one line for test failures and the CLI
};
Comparison compare(std::span<const double> actual, std::span<const double> ref,
                   std::span<const double> ref_lowp, double multiplier);

// LSE check: |actual - ref| <= 1e-4 * |ref| (+inf must match +inf exactly).
Comparison compare_lse(std::span<const double> actual, std::span<const double> ref);

}  // namespace flashattn::reference
