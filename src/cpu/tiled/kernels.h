// The inner loops of the tiled backend (GEMM micro-kernel, row max, exp, online softmax),
// chosen at run time.
//
// Every kernel set computes the same functions; the AVX-512 set is used when the CPU has
// AVX-512F, the portable set (plain C++ the compiler vectorises for the baseline ISA)
// otherwise. FLASHATTN_CPU_ISA=portable forces the portable set (tests use it to cover
// CPUs without AVX-512 on this one); FLASHATTN_CPU_ISA=avx512 keeps this set but turns off
// the AMX products of amx.h. bf16 problems use those products where available.
#pragma once

#include <cstdint>

namespace flashattn::cpu_tiled {

struct Kernels {
  const char* name;
  // C[m x n] = A[m x k] * B[k x n] (accumulate: C += ...), all fp32. A element (i, p) is at
  // a[i * a_row + p * a_col], so A may be a transposed view (a_row 1, a_col = its width);
  // B and C are row-major with leading dimensions ldb and ldc.
  void (*gemm)(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col,
               const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate);
  // max(x[0..n)), -inf for n == 0.
  float (*row_max)(const float* x, int64_t n);
  // x[j] = exp(scale * x[j] - shift) for j < n, and returns the sum of the results. Elements
  // at -inf (masked) become exactly 0; scale must be positive and shift finite. Taking the
  // softmax scale here saves the softmax a pass over the score tile.
  float (*exp_shifted)(float* x, int64_t n, float scale, float shift);
  // One online-softmax step of FlashAttention-2 over the rows of a score tile s (leading
  // dimension ld, columns [0, cols)): for each row r,
  //   m' = max(row_max[r], exp_scale * max_j s[r][j]),  P = exp(exp_scale * s[r] - m'),
  //   row_sum[r] = row_sum[r] * exp(row_max[r] - m') + sum(P),  row_max[r] = m',
  // and the first dim_v values of out row r (leading dimension out_ld) are scaled by
  // exp(row_max[r] - m'). P overwrites s; rows that have seen nothing visible yet (m' = -inf)
  // get P = 0. With probs_bf16 non-null P goes there instead, as bf16 (leading dimension ld),
  // and s is left unspecified.
  void (*softmax_rows)(float* s, int64_t ld, int64_t rows, int64_t cols, float exp_scale,
                       float* row_max, float* row_sum, float* out, int64_t out_ld, int64_t dim_v,
                       uint16_t* probs_bf16);
};

// The set for this CPU (decided once, thread-safe).
const Kernels& kernels();
// The portable set, always available.
const Kernels& portable_kernels();
// The AVX-512 set, or nullptr when this CPU lacks AVX-512F.
const Kernels* avx512_kernels();

}  // namespace flashattn::cpu_tiled
