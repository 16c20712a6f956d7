// Portable kernel set: plain loops that the compiler vectorises for the baseline ISA.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/element.h"
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

void softmax_rows(float* s, int64_t ld, int64_t rows, int64_t cols, float exp_scale,
                  float* row_max_io, float* row_sum, float* out, int64_t out_ld, int64_t dim_v,
                  uint16_t* probs_bf16) {
  for (int64_t r = 0; r < rows; ++r) {
    float* scores = s + r * ld;
    const float new_max = std::max(row_max_io[r], row_max(scores, cols) * exp_scale);
    if (new_max == -std::numeric_limits<float>::infinity()) {
      std::fill(scores, scores + cols, 0.0f);
    } else {
      const float correction = new_max == row_max_io[r] ? 1.0f : std::exp(row_max_io[r] - new_max);
      row_sum[r] = row_sum[r] * correction + exp_shifted(scores, cols, exp_scale, new_max);
      row_max_io[r] = new_max;
      if (correction != 1.0f) {
        for (int64_t d = 0; d < dim_v; ++d) out[r * out_ld + d] *= correction;
      }
    }
    if (probs_bf16 != nullptr) {  // s may keep P too: the contract leaves it unspecified
      for (int64_t j = 0; j < cols; ++j) probs_bf16[r * ld + j] = cpu::float_to_bf16(scores[j]);
    }
  }
}

}  // namespace

const Kernels& portable_kernels() {
  static const Kernels set{"portable", gemm, row_max, exp_shifted, softmax_rows};
  return set;
}

}  // namespace flashattn::cpu_tiled
