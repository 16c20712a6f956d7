// AVX-512 kernel set: a register-blocked fp32 GEMM micro-kernel, vector row max and exp.
//
// Compiled with per-function target attributes rather than -mavx512f for the file, so the
// library still runs on CPUs without AVX-512: nothing here executes unless avx512_kernels()
// found AVX-512F at run time.
#include "cpu/tiled/kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12 reports its own intrinsics' "undefined" pass-through operands as uninitialised when
// they are called under a target attribute; the warnings are about the header, not this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <limits>

#include "cpu/tiled/avx512_exp.h"

#define FLASHATTN_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma")))

namespace flashattn::cpu_tiled {
namespace {

constexpr int kRowBlock = 6;    // rows of C held in registers
constexpr int kMaxVectors = 4;  // 16-float vectors per row: a 6 x 64 block is 24 accumulators

// C block [MR x up to 16*NV] += A block * B panel. The last vector of each row is masked by
// `tail` so that any n works without padding the operands.
template <int MR, int NV>
FLASHATTN_AVX512 void gemm_block(int64_t k, const float* a, int64_t a_row, int64_t a_col,
                                 const float* b, int64_t ldb, float* c, int64_t ldc, __mmask16 tail,
                                 bool accumulate) {
  __m512 acc[MR][NV];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __mmask16 lanes = v == NV - 1 ? tail : __mmask16(0xffff);
      acc[i][v] =
          accumulate ? _mm512_maskz_loadu_ps(lanes, c + i * ldc + 16 * v) : _mm512_setzero_ps();
    }
  }
  for (int64_t p = 0; p < k; ++p) {
    __m512 b_vectors[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __mmask16 lanes = v == NV - 1 ? tail : __mmask16(0xffff);
      b_vectors[v] = _mm512_maskz_loadu_ps(lanes, b + p * ldb + 16 * v);
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m512 a_value = _mm512_set1_ps(a[i * a_row + p * a_col]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(a_value, b_vectors[v], acc[i][v]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __mmask16 lanes = v == NV - 1 ? tail : __mmask16(0xffff);
      _mm512_mask_storeu_ps(c + i * ldc + 16 * v, lanes, acc[i][v]);
    }
  }
}

using BlockFunction = void (*)(int64_t, const float*, int64_t, int64_t, const float*, int64_t,
                               float*, int64_t, __mmask16, bool);

template <int MR>
constexpr BlockFunction block_for(int vectors) {
  switch (vectors) {
    case 1: return gemm_block<MR, 1>;
    case 2: return gemm_block<MR, 2>;
    case 3: return gemm_block<MR, 3>;
    default: return gemm_block<MR, 4>;
  }
}

BlockFunction block_function(int rows, int vectors) {
  switch (rows) {
    case 1: return block_for<1>(vectors);
    case 2: return block_for<2>(vectors);
    case 3: return block_for<3>(vectors);
    case 4: return block_for<4>(vectors);
    case 5: return block_for<5>(vectors);
    default: return block_for<6>(vectors);
  }
}

// Column panels outermost: a k x 64 panel of B stays in L1 while every row block of A
// streams past it.
void gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col,
          const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  constexpr int64_t panel = 16 * kMaxVectors;
  for (int64_t j0 = 0; j0 < n; j0 += panel) {
    const int64_t width = n - j0 < panel ? n - j0 : panel;
    const int vectors = static_cast<int>((width + 15) / 16);
    const int64_t tail_lanes = width - 16 * (vectors - 1);
    const __mmask16 tail = static_cast<__mmask16>((1u << tail_lanes) - 1u);
    const BlockFunction full_rows = block_function(kRowBlock, vectors);
    int64_t i0 = 0;
    for (; i0 + kRowBlock <= m; i0 += kRowBlock) {
      full_rows(k, a + i0 * a_row, a_row, a_col, b + j0, ldb, c + i0 * ldc + j0, ldc, tail,
                accumulate);
    }
    if (i0 < m) {
      block_function(static_cast<int>(m - i0), vectors)(
          k, a + i0 * a_row, a_row, a_col, b + j0, ldb, c + i0 * ldc + j0, ldc, tail, accumulate);
    }
  }
}

FLASHATTN_AVX512 __mmask16 lanes_left(int64_t remaining) {
  return remaining >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << remaining) - 1u);
}

FLASHATTN_AVX512 float row_max(const float* x, int64_t n) {
  const __m512 minus_infinity = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 best = minus_infinity;
  for (int64_t j = 0; j < n; j += 16) {
    best = _mm512_max_ps(best, _mm512_mask_loadu_ps(minus_infinity, lanes_left(n - j), x + j));
  }
  return _mm512_reduce_max_ps(best);
}

FLASHATTN_AVX512 float exp_shifted(float* x, int64_t n, float scale, float shift) {
  const __m512 scale_vector = _mm512_set1_ps(scale);
  const __m512 shift_vector = _mm512_set1_ps(shift);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 lanes = lanes_left(n - j);
    const __m512 value = exp_vector(
        _mm512_fmsub_ps(scale_vector, _mm512_maskz_loadu_ps(lanes, x + j), shift_vector));
    _mm512_mask_storeu_ps(x + j, lanes, value);
    sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(lanes, value));
  }
  return _mm512_reduce_add_ps(sum);
}

}  // namespace

const Kernels* avx512_kernels() {
  static const Kernels set{"avx512", gemm, row_max, exp_shifted};
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") ? &set : nullptr;
}

}  // namespace flashattn::cpu_tiled

#else  // not x86-64 with GCC/Clang: no AVX-512 set

namespace flashattn::cpu_tiled {
const Kernels* avx512_kernels() {
  return nullptr;
}
}  // namespace flashattn::cpu_tiled

#endif
