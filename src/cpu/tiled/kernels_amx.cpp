// AMX-BF16 tile products of the forward: whole score tiles and P.V accumulation.
//
// All eight tile registers are configured as 16 rows x 64 bytes: tmm0-3 hold a 32 x 32 block
// of fp32 results, tmm4-5 two 16-row slices of A, tmm6-7 two 16-column slices of B, so each
// pair of A and B loads feeds four TDPBF16PS.
#include "cpu/tiled/amx.h"
#include "cpu/tiled/problem.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

#include "cpu/tiled/avx512_exp.h"

#define FLASHATTN_AMX \
  __attribute__((target("amx-tile,amx-bf16,avx512f,avx512dq,avx512bw,avx512bf16,avx512vl,fma")))

namespace flashattn::cpu_tiled {
namespace {

bool request_tile_permission() {
  constexpr long kArchReqXcompPerm = 0x1023;  // arch_prctl(ARCH_REQ_XCOMP_PERM, ...)
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

bool detect() {
  const char* forced = std::getenv("FLASHATTN_CPU_ISA");
  if (forced != nullptr && std::string_view(forced) != "amx") return false;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("amx-bf16") || !__builtin_cpu_supports("amx-tile") ||
      !__builtin_cpu_supports("avx512bf16") || !__builtin_cpu_supports("avx512f")) {
    return false;
  }
  return request_tile_permission();
}

constexpr int64_t kTileRows = 16;
constexpr int64_t kTileBytes = 64;  // per row: 32 bf16 or 16 fp32

}  // namespace

bool amx_bf16_available() {
  static const bool available = detect();
  return available;
}

// The 64-byte operand of LDTILECFG, palette 1: byte 0 the palette, bytes 16 + 2t the bytes
// per row of tile t (16-bit), byte 48 + t its rows. GCC 12's _tile_loadconfig tells the
// compiler that it reads only 8 bytes, so the stores to the rest were dropped as dead: the asm
// below names all 64 bytes as its input.
FLASHATTN_AMX void amx_begin_thread() {
  alignas(64) unsigned char config[64] = {};
  config[0] = 1;
  for (int tile = 0; tile < 8; ++tile) {
    config[16 + 2 * tile] = static_cast<unsigned char>(kTileBytes);
    config[48 + tile] = static_cast<unsigned char>(kTileRows);
  }
  __asm__ volatile("ldtilecfg %0" ::"m"(config));
}

FLASHATTN_AMX void amx_end_thread() {
  _tile_release();
}

FLASHATTN_AMX void amx_scores(const uint16_t* q, const uint16_t* keys_packed, int64_t dim_pad,
                              float* s, int64_t s_ld) {
  const int64_t q_stride = dim_pad * 2;           // bytes per query row
  constexpr int64_t k_stride = kKeyTile * 2 * 2;  // bytes per key pair row
  const int64_t s_stride = s_ld * 4;              // bytes per score row
  for (int64_t row0 = 0; row0 < kQueryTile; row0 += 32) {
    for (int64_t col0 = 0; col0 < kKeyTile; col0 += 32) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t k0 = 0; k0 < dim_pad; k0 += 32) {
        _tile_loadd(4, q + row0 * dim_pad + k0, q_stride);
        _tile_loadd(5, q + (row0 + 16) * dim_pad + k0, q_stride);
        const uint16_t* b = keys_packed + (k0 / 2) * kKeyTile * 2;
        _tile_loadd(6, b + col0 * 2, k_stride);
        _tile_loadd(7, b + (col0 + 16) * 2, k_stride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, s + row0 * s_ld + col0, s_stride);
      _tile_stored(1, s + row0 * s_ld + col0 + 16, s_stride);
      _tile_stored(2, s + (row0 + 16) * s_ld + col0, s_stride);
      _tile_stored(3, s + (row0 + 16) * s_ld + col0 + 16, s_stride);
    }
  }
}

FLASHATTN_AMX void amx_accumulate(const uint16_t* a, int64_t rows, int64_t depth,
                                  const uint16_t* b_packed, int64_t n, float* c, int64_t ldc) {
  const int64_t a_stride = depth * 2;  // bytes per row of a
  const int64_t b_stride = n * 4;      // bytes per pair row of b (n x 2 bf16)
  const int64_t c_stride = ldc * 4;
  for (int64_t row0 = 0; row0 < rows; row0 += 32) {
    for (int64_t col0 = 0; col0 < n; col0 += 32) {
      float* block = c + row0 * ldc + col0;
      _tile_loadd(0, block, c_stride);
      _tile_loadd(1, block + 16, c_stride);
      _tile_loadd(2, block + 16 * ldc, c_stride);
      _tile_loadd(3, block + 16 * ldc + 16, c_stride);
      for (int64_t k0 = 0; k0 < depth; k0 += 32) {
        _tile_loadd(4, a + row0 * depth + k0, a_stride);
        _tile_loadd(5, a + (row0 + 16) * depth + k0, a_stride);
        const uint16_t* b = b_packed + (k0 / 2) * n * 2;
        _tile_loadd(6, b + col0 * 2, b_stride);
        _tile_loadd(7, b + (col0 + 16) * 2, b_stride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, block, c_stride);
      _tile_stored(1, block + 16, c_stride);
      _tile_stored(2, block + 16 * ldc, c_stride);
      _tile_stored(3, block + 16 * ldc + 16, c_stride);
    }
  }
}

FLASHATTN_AMX void exp_columns(float* x, int64_t rows, float scale, const float* shifts) {
  static_assert(kQueryTile % 16 == 0);
  const __m512 scale_vector = _mm512_set1_ps(scale);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * kQueryTile;
    for (int64_t j = 0; j < kQueryTile; j += 16) {
      const __m512 argument =
          _mm512_fmsub_ps(scale_vector, _mm512_loadu_ps(row + j), _mm512_loadu_ps(shifts + j));
      _mm512_storeu_ps(row + j, exp_vector(argument));
    }
  }
}

FLASHATTN_AMX void pack_row_pairs_bf16(const float* src, uint16_t* dst) {
  static_assert(kKeyTile % 2 == 0 && kQueryTile % 16 == 0);
  // Output word 2i takes lane i of the even row, word 2i+1 lane i of the odd row (which sits
  // at 16 + i after the two rows are concatenated).
  alignas(64) uint16_t order[32];
  for (int i = 0; i < 16; ++i) {
    order[2 * i] = static_cast<uint16_t>(i);
    order[2 * i + 1] = static_cast<uint16_t>(16 + i);
  }
  const __m512i interleave = _mm512_load_si512(order);
  for (int64_t pair = 0; pair < kKeyTile / 2; ++pair) {
    const float* even = src + 2 * pair * kQueryTile;
    const float* odd = even + kQueryTile;
    uint16_t* out = dst + pair * kQueryTile * 2;
    for (int64_t j = 0; j < kQueryTile; j += 16) {
      const __m256bh even_bf16 = _mm512_cvtneps_pbh(_mm512_loadu_ps(even + j));
      const __m256bh odd_bf16 = _mm512_cvtneps_pbh(_mm512_loadu_ps(odd + j));
      const __m512i both =
          _mm512_inserti64x4(_mm512_castsi256_si512(reinterpret_cast<const __m256i&>(even_bf16)),
                             reinterpret_cast<const __m256i&>(odd_bf16), 1);
      _mm512_storeu_si512(out + j * 2, _mm512_permutexvar_epi16(interleave, both));
    }
  }
}

FLASHATTN_AMX void convert_to_bf16(const float* src, int64_t n, uint16_t* dst) {
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m256bh packed = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + j));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + j),
                        reinterpret_cast<const __m256i&>(packed));
  }
  if (j < n) {
    const __mmask16 lanes = static_cast<__mmask16>((1u << (n - j)) - 1u);
    const __m256bh packed = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(lanes, src + j));
    _mm256_mask_storeu_epi16(dst + j, lanes, reinterpret_cast<const __m256i&>(packed));
  }
}

}  // namespace flashattn::cpu_tiled

#else  // no AMX support in this toolchain or OS: the fp32 kernels run every problem

namespace flashattn::cpu_tiled {
bool amx_bf16_available() {
  return false;
}
void amx_begin_thread() {}
void amx_end_thread() {}
void amx_scores(const uint16_t*, const uint16_t*, int64_t, float*, int64_t) {}
void amx_accumulate(const uint16_t*, int64_t, int64_t, const uint16_t*, int64_t, float*, int64_t) {}
void exp_columns(float*, int64_t, float, const float*) {}
void pack_row_pairs_bf16(const float*, uint16_t*) {}
void convert_to_bf16(const float*, int64_t, uint16_t*) {}
}  // namespace flashattn::cpu_tiled

#endif
