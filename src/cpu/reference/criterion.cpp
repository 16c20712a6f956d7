// The DESIGN.md correctness criterion: error bound from the low-precision naive algorithm.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "cpu/reference/reference.h"

namespace flashattn::reference {
namespace {

constexpr double kAbsoluteSlack = 1e-5;
constexpr double kLseRelativeTolerance = 1e-4;

void note_worst(Comparison* result, int64_t index, double error, double actual, double ref) {
  if (result->worst_index < 0 || error > result->max_error) {
    result->max_error = error;
    result->worst_index = index;
    result->worst_actual = actual;
    result->worst_ref = ref;
  }
}

// Scans actual against ref with `error_of(actual, ref)`: counts NaN in actual (reported at the
// first one, since NaN never passes), keeps the worst error, and decides `passed` against the
// tolerance already in `result`.
template <typename ErrorOf>
void scan_errors(Comparison* result, std::span<const double> actual, std::span<const double> ref,
                 ErrorOf error_of) {
  int64_t first_nan = -1;
  for (size_t i = 0; i < ref.size(); ++i) {
    const int64_t index = static_cast<int64_t>(i);
    if (std::isnan(actual[i])) {
      if (first_nan < 0) first_nan = index;
      ++result->nan_count;
      continue;
    }
    note_worst(result, index, error_of(actual[i], ref[i]), actual[i], ref[i]);
  }
  if (first_nan >= 0) {
    result->worst_index = first_nan;
    result->worst_actual = actual[static_cast<size_t>(first_nan)];
    result->worst_ref = ref[static_cast<size_t>(first_nan)];
  }
  // A NaN tolerance (NaN in ref or ref_lowp) fails this comparison as well.
  result->passed = result->nan_count == 0 && result->max_error <= result->tolerance;
}

}  // namespace

std::string Comparison::describe() const {
  char line[320];
  if (size_mismatch) return "size mismatch between actual and reference";
  if (relative) {
    std::snprintf(line, sizeof(line),
                  "max relative error %.3e (tolerance %.1e) at index %lld: actual %.9g, ref "
                  "%.9g; %lld NaN",
                  max_error, tolerance, static_cast<long long>(worst_index), worst_actual,
                  worst_ref, static_cast<long long>(nan_count));
  } else {
    std::snprintf(line, sizeof(line),
                  "max|actual-ref| %.3e vs tolerance %.3e (lowp error %.3e) at index %lld: "
                  "actual %.9g, ref %.9g; %lld NaN",
                  max_error, tolerance, lowp_error, static_cast<long long>(worst_index),
                  worst_actual, worst_ref, static_cast<long long>(nan_count));
  }
  return std::string(passed ? "passed: " : "FAILED: ") + line;
}

Comparison compare(std::span<const double> actual, std::span<const double> ref,
                   std::span<const double> ref_lowp, double multiplier) {
  Comparison result;
  if (actual.size() != ref.size() || ref_lowp.size() != ref.size()) {
    result.size_mismatch = true;
    return result;
  }
  for (size_t i = 0; i < ref.size(); ++i) {
    const double lowp_error = std::abs(ref_lowp[i] - ref[i]);
    // std::max would drop a NaN; a NaN in either reference must poison the bound instead.
    result.lowp_error = std::isnan(lowp_error) || std::isnan(result.lowp_error)
                            ? std::numeric_limits<double>::quiet_NaN()
                            : std::max(result.lowp_error, lowp_error);
  }
  result.tolerance = multiplier * result.lowp_error + kAbsoluteSlack;
  scan_errors(&result, actual, ref, [](double a, double r) { return std::abs(a - r); });
  return result;
}

Comparison compare_lse(std::span<const double> actual, std::span<const double> ref) {
  Comparison result;
  result.relative = true;
  result.tolerance = kLseRelativeTolerance;
  if (actual.size() != ref.size()) {
    result.size_mismatch = true;
    return result;
  }
  scan_errors(&result, actual, ref, [](double a, double r) {
    constexpr double kInfinity = std::numeric_limits<double>::infinity();
    if (std::isnan(r)) return kInfinity;  // a NaN oracle proves nothing
    if (std::isinf(r) || std::isinf(a)) return a == r ? 0.0 : kInfinity;  // +inf only matches +inf
    return std::abs(a - r) / std::max(1.0, std::abs(r));
  });
  return result;
}

}  // namespace flashattn::reference
