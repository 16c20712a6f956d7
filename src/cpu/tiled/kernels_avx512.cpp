// AVX-512 kernel set: a register-blocked fp32 GEMM micro-kernel, vector row max and exp.
//
// Compiled with per-function target attributes rather than -mavx512f for the file, so the
// library still runs on CPUs without AVX-512: nothing here executes unless avx512_kernels()
// found AVX-512F at run time.
#include "cpu/tiled/kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12 reports its own intrinsics' "undefined" pass-through operands as uninitialised when
// they are called under a target attribute; the warnings are about the header, not this code.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <limits>

#include "cpu/tiled/avx512_exp.h"

#define FLASHATTN_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma")))
// For the two variants of softmax_rows: the one without native bf16 conversion uses no
// AVX512-BF16 instruction and is the one chosen on CPUs without it.
#define FLASHATTN_AVX512_BF16 \
  __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx512bf16,fma")))

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

// Round to nearest even to bf16. Without AVX512-BF16: on the bit pattern (P is finite, so no
// NaN case), then keep the high halves. With it, VCVTNEPS2BF16 does the same in one
// instruction instead of seven (P is 0 or above 1e-38, so its flushing of denormal inputs
// changes nothing); the bf16 P is only written on the AMX path, whose CPUs all have it.
template <bool kNativeBf16>
FLASHATTN_AVX512_BF16 __m256i to_bf16(__m512 x) {
  if constexpr (kNativeBf16) {
    const __m256bh packed = _mm512_cvtneps_pbh(x);
    return reinterpret_cast<const __m256i&>(packed);
  } else {
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i rounded =
        _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16));
  }
}

// In three passes over the tile (all row maxima, then all exps, then the per-row bookkeeping)
// rather than row by row: the rows are independent, so each pass overlaps the long
// max -> exp -> sum dependency chains of many rows instead of waiting on one at a time.
template <bool kNativeBf16>
FLASHATTN_AVX512_BF16 void softmax_rows(float* s, int64_t ld, int64_t rows, int64_t cols,
                                   float exp_scale, float* row_max_io, float* row_sum, float* out,
                                   int64_t out_ld, int64_t dim_v, uint16_t* probs_bf16) {
  constexpr int64_t kChunk = 64;
  constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();
  const __m512 minus_infinity = _mm512_set1_ps(kMinusInfinity);
  constexpr float kLog2e = 1.44269504088896341f;
  const __m512 scale = _mm512_set1_ps(exp_scale * kLog2e);
  const __m512 min_exponent = _mm512_set1_ps(-125.0f);  // below: P is 0 (exp(-86.6) ~ 2e-38)
  alignas(64) float new_max[kChunk], tile_sum[kChunk], correction[kChunk];
  for (int64_t r0 = 0; r0 < rows; r0 += kChunk) {
    const int64_t count = rows - r0 < kChunk ? rows - r0 : kChunk;
    for (int64_t r = 0; r < count; ++r) {
      const float* scores = s + (r0 + r) * ld;
      __m512 best = minus_infinity;
      for (int64_t j = 0; j < cols; j += 16) {
        best = _mm512_max_ps(
            best, _mm512_mask_loadu_ps(minus_infinity, lanes_left(cols - j), scores + j));
      }
      const float tile_max = _mm512_reduce_max_ps(best) * exp_scale;
      const float old_max = row_max_io[r0 + r];
      new_max[r] = tile_max > old_max ? tile_max : old_max;
    }
    for (int64_t r = 0; r < count; ++r) {
      float* scores = s + (r0 + r) * ld;
      // A row that has seen nothing visible has only -inf scores: any finite shift gives P 0.
      // P = 2^(log2(e) * (exp_scale * s - shift)).
      const __m512 shift =
          _mm512_set1_ps(kLog2e * (new_max[r] == kMinusInfinity ? 0.0f : new_max[r]));
      __m512 sum = _mm512_setzero_ps();
      uint16_t* bf16_row = probs_bf16 != nullptr ? probs_bf16 + (r0 + r) * ld : nullptr;
      for (int64_t j = 0; j < cols; j += 16) {
        const __mmask16 lanes = lanes_left(cols - j);
        const __m512 t = _mm512_fmsub_ps(scale, _mm512_maskz_loadu_ps(lanes, scores + j), shift);
        const __mmask16 keep = _mm512_mask_cmp_ps_mask(lanes, t, min_exponent, _CMP_GE_OQ);
        const __m512 p = exp2_kept(keep, t);
        if (bf16_row != nullptr) {
          _mm256_mask_storeu_epi16(bf16_row + j, lanes, to_bf16<kNativeBf16>(p));
        } else {
          _mm512_mask_storeu_ps(scores + j, lanes, p);
        }
        sum = _mm512_add_ps(sum, p);
      }
      tile_sum[r] = _mm512_reduce_add_ps(sum);
    }
    for (int64_t r = 0; r < count; r += 16) {
      // exp(old - new): 1 while the max stands, 0 on the first visible tile (old -inf); rows
      // still at -inf keep 0 / 0 and are not touched below.
      const __mmask16 lanes = lanes_left(count - r);
      const __m512 old_max = _mm512_mask_loadu_ps(minus_infinity, lanes, row_max_io + r0 + r);
      const __m512 fresh = _mm512_maskz_loadu_ps(lanes, new_max + r);
      const __mmask16 moved = _mm512_mask_cmp_ps_mask(lanes, old_max, fresh, _CMP_NEQ_UQ);
      const __m512 factor = _mm512_mask_mov_ps(_mm512_set1_ps(1.0f), moved,
                                               exp_vector(_mm512_sub_ps(old_max, fresh)));
      _mm512_mask_storeu_ps(correction + r, lanes, factor);
    }
    for (int64_t r = 0; r < count; ++r) {
      if (new_max[r] == kMinusInfinity) continue;
      row_sum[r0 + r] = row_sum[r0 + r] * correction[r] + tile_sum[r];
      row_max_io[r0 + r] = new_max[r];
      if (correction[r] == 1.0f) continue;
      const __m512 factor = _mm512_set1_ps(correction[r]);
      float* out_row = out + (r0 + r) * out_ld;
      for (int64_t d = 0; d < dim_v; d += 16) {
        const __mmask16 lanes = lanes_left(dim_v - d);
        _mm512_mask_storeu_ps(out_row + d, lanes,
                              _mm512_mul_ps(factor, _mm512_maskz_loadu_ps(lanes, out_row + d)));
      }
    }
  }
}

}  // namespace

const Kernels* avx512_kernels() {
  static const Kernels set{"avx512", gemm, row_max, exp_shifted, softmax_rows<false>};
  static const Kernels set_bf16{"avx512", gemm, row_max, exp_shifted, softmax_rows<true>};
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) return nullptr;
  return __builtin_cpu_supports("avx512bf16") ? &set_bf16 : &set;
}

}  // namespace flashattn::cpu_tiled

#else  // not x86-64 with GCC/Clang: no AVX-512 set

namespace flashattn::cpu_tiled {
const Kernels* avx512_kernels() {
  return nullptr;
}
}  // namespace flashattn::cpu_tiled

#endif
