// Portable kernel set: plain loops that the compiler vectorises for the baseline ISA.
#include <cmath>
#include <limits>

#include "cpu/tiled/kernels.h"

namespace flashattn::cpu_tiled {
namespace {

// Row by row, with the contiguous n loop innermost so that it vectorises.
void gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col,
          const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < m; ++i) {
    float* c_row = c + i * ldc;
    if (!accumulate) {
      for (int64_t j = 0; j < n; ++j) c_row[j] = 0.0f;
    }
    for (int64_t p = 0; p < k; ++p) {
      const float a_value = a[i * a_row + p * a_col];
      const float* b_row = b + p * ldb;
      for (int64_t j = 0; j < n; ++j) c_row[j] += a_value * b_row[j];
    }
  }
}

float row_max(const float* x, int64_t n) {
  float best = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) best = x[j] > best ? x[j] : best;
  return best;
}

float exp_shifted(float* x, int64_t n, float scale, float shift) {
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    x[j] = std::exp(scale * x[j] - shift);
    sum += x[j];
  }
  return sum;
}

}  // namespace

const Kernels& portable_kernels() {
  static const Kernels set{"portable", gemm, row_max, exp_shifted};
  return set;
}

}  // namespace flashattn::cpu_tiled
