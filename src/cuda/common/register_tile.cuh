// Register tiles of mma accumulators and the online softmax over their rows (row max, row sum,
// rescale), the register half of the ThunderKittens-style vocabulary used by the kernels.
#pragma once

#include <cstdint>

#include "cuda/common/ptx.cuh"

// store_to_tile's addresses stepped by XOR from one offset (1, default) or worked out per
// store (0, A/B runs).
#ifndef FLASHATTN_STORE_TILE_XOR
#define FLASHATTN_STORE_TILE_XOR 1
#endif

namespace flashattn::cuda {

// One warp's kM x kN grid of m16n8 fp32 accumulators. Lane (g = lane / 4, t = lane % 4)
// holds, for tile (m, n): element [0..1] at row 16m + g, cols 8n + 2t..2t+1 and element
// [2..3] at row 16m + g + 8, same cols. Row "half" h of tile m is row 16m + g + 8h.
template <int kM, int kN>
struct AccTile {
  float v[kM][kN][4];

  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int n = 0; n < kN; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) v[m][n][e] = 0.0f;
  }

  // Row h (0: the fragment's row g, 1: row g + 8) of m16 tile m, times factor.
  __device__ __forceinline__ void scale_row(int m, int h, float factor) {
#pragma unroll
    for (int n = 0; n < kN; ++n) {
      v[m][n][2 * h] *= factor;
      v[m][n][2 * h + 1] *= factor;
    }
  }
};

// A warp's accumulators, times scale and rounded to T, into a swizzled shared-memory tile
// (SmemTile: offset(row, chunk)) at rows row0 + 16 m + ..., 8-column chunks chunk0 + n: each
// quad of lanes writes one 16-byte chunk of each row, so the 8 rows of a store land on
// different bank groups. row0 is a multiple of 8 and chunk0 a multiple of kN (a warp's rows
// and its share of the columns).
template <typename Tile, typename T, int kM, int kN>
__device__ __forceinline__ void store_to_tile(uint32_t tile, const AccTile<kM, kN>& acc, int row0,
                                              int chunk0, float scale = 1.0f) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane / 4;
  const int t = lane % 4;
  // With kN a power of two the callers' chunk0 (a warp's share of the columns, a multiple of
  // kN) and row0 (a multiple of 16) let one offset serve every store: rows 8 apart keep the
  // swizzle phase (whole rows further), and chunk0 + n differs from chunk0 by n % 8 in bits 4-6
  // of the offset alone (an XOR) and by n / 8 whole panels. Worked out per store, the swizzle
  // cost two integer instructions a store (SASS, session 14). Measured on the H200
  // (bench/NOTES.md, session 15), backward, bf16, same-process A/B against per-store offsets:
  // d64 +0.4-1.2%, d96 +1.7-2.4%, d128 +1.4-2.8%.
  constexpr bool kXorSteps = FLASHATTN_STORE_TILE_XOR && (kN & (kN - 1)) == 0;
  const uint32_t base = Tile::offset(row0 + g, chunk0) + 4 * t;
#pragma unroll
  for (int m = 0; m < kM; ++m)
#pragma unroll
    for (int n = 0; n < kN; ++n)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        uint32_t offset;
        if constexpr (kXorSteps) {
          constexpr int kRowBytes = 128;  // SmemTile: a panel row
          offset =
              (base ^ static_cast<uint32_t>((n % 8) << 4)) +
              static_cast<uint32_t>(((n / 8) * Tile::kPanelRows + 16 * m + 8 * hh) * kRowBytes);
        } else {
          offset = Tile::offset(row0 + 16 * m + g + 8 * hh, chunk0 + n) + 4 * t;
        }
        st_shared_b32(tile + offset,
                      pack2<T>(acc.v[m][n][2 * hh] * scale, acc.v[m][n][2 * hh + 1] * scale));
      }
}

// The accumulators of a score tile rounded to T and regrouped as mma A fragments over the
// key dimension: k-step j of m-tile m is {s(m, 2j)[0..1], s(m, 2j)[2..3], s(m, 2j+1)[0..1],
// s(m, 2j+1)[2..3]}, which is exactly the A layout (a0..a3) of m16n8k16.
template <typename T, int kM, int kN>
__device__ __forceinline__ void to_a_fragments(const AccTile<kM, kN>& s,
                                               uint32_t (&a)[kM][kN / 2][4]) {
  static_assert(kN % 2 == 0, "pairs of n8 tiles make one k16 step");
#pragma unroll
  for (int m = 0; m < kM; ++m)
#pragma unroll
    for (int j = 0; j < kN / 2; ++j) {
      a[m][j][0] = pack2<T>(s.v[m][2 * j][0], s.v[m][2 * j][1]);
      a[m][j][1] = pack2<T>(s.v[m][2 * j][2], s.v[m][2 * j][3]);
      a[m][j][2] = pack2<T>(s.v[m][2 * j + 1][0], s.v[m][2 * j + 1][1]);
      a[m][j][3] = pack2<T>(s.v[m][2 * j + 1][2], s.v[m][2 * j + 1][3]);
    }
}

// Reductions across the four lanes (t = 0..3) that share a row.
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Lazy rescaling (kLazy, FA4's conditional rescale): a row's running max moves only where a
// tile's max exceeds it by more than kLazyRescaleLog2 in the log2 domain, so probabilities are
// taken against a max up to that much below the true one (values up to 2^8: exact in fp32, and
// bf16 / fp16 keep their relative precision there), and a warp none of whose rows moves skips
// the correction of o and of the sums: kD * 4 multiplies a row pair, 128 of the d128 forward's
// ~1100 instructions a step, which in the steady state of a long row is nearly every step. The
// LSE and o come out the same, up to rounding: both are taken against the max the sums were.
// The kernels' configurations say where it pays (ForwardConfig::kLazyRescale).
inline constexpr float kLazyRescaleLog2 = 8.0f;

// Online softmax state for the 2 * kM rows a lane touches (kLazy: lazy rescaling, above). Scores
// arrive as x with log2-domain value x * multiplier (multiplier = scale * log2(e) for raw dot
// products, 1 for scores already modified and converted); masked scores are -inf.
template <int kM, bool kLazy = false>
struct OnlineSoftmax {
  float row_max[kM][2];  // running max of x (-inf before any visible key)
  float row_sum[kM][2];  // this lane's partial sum of exp2(x * multiplier - max * multiplier)

  __device__ __forceinline__ void init() {
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        row_max[m][h] = -INFINITY;
        row_sum[m][h] = 0.0f;
      }
  }

  // Folds one score tile in: new row max, rescale of the running sum and of o, and s turned
  // into the unnormalised probabilities exp2(x * multiplier - max * multiplier) in place.
  template <int kN, int kD>
  __device__ __forceinline__ void update(AccTile<kM, kN>& s, AccTile<kM, kD>& o, float multiplier) {
    float new_max[kM][2];
    tile_max(s, new_max);
    apply(s, o, multiplier, new_max);
  }

  // The two halves of update, for warps that share rows (each holding some of the keys): the
  // running max folded with s's row maxima (reduced over the lane quad), which the caller may
  // fold further with the other warps' before apply.
  template <int kN>
  __device__ __forceinline__ void tile_max(const AccTile<kM, kN>& s,
                                           float (&new_max)[kM][2]) const {
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float x = row_max[m][h];
#pragma unroll
        for (int n = 0; n < kN; ++n) x = fmaxf(x, fmaxf(s.v[m][n][2 * h], s.v[m][n][2 * h + 1]));
        new_max[m][h] = quad_max(x);
      }
  }

  template <int kN, int kD>
  __device__ __forceinline__ void apply(AccTile<kM, kN>& s, AccTile<kM, kD>& o, float multiplier,
                                        const float (&new_max)[kM][2]) {
    if constexpr (kLazy) {
      apply_lazily(s, o, multiplier, new_max);
      return;
    }
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float max_scaled = scaled_max(new_max[m][h], multiplier);
        const float correction = fast_exp2(row_max[m][h] * multiplier - max_scaled);
        row_max[m][h] = new_max[m][h];
        row_sum[m][h] =
            exponentiate_row(s, m, h, multiplier, max_scaled, row_sum[m][h] * correction);
        o.scale_row(m, h, correction);
      }
  }

  // apply with lazy rescaling (kLazy). Every lane of the warp must call
  // it (a vote); the two warps of a pair that share rows take the same rows' decisions, since
  // both hold the same maxima.
  template <int kN, int kD>
  __device__ __forceinline__ void apply_lazily(AccTile<kM, kN>& s, AccTile<kM, kD>& o,
                                               float multiplier, const float (&new_max)[kM][2]) {
    // A row moves where its new max is more than kLazyRescaleLog2 above the one in use; the
    // first visible key always moves a row (from -inf), a row that has seen only masked scores
    // never does.
    bool moves[kM][2];
    bool any_moves = false;
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        moves[m][h] = new_max[m][h] * multiplier > row_max[m][h] * multiplier + kLazyRescaleLog2;
        any_moves |= moves[m][h];
      }
    if (__any_sync(0xffffffffu, any_moves)) {
#pragma unroll
      for (int m = 0; m < kM; ++m)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          // exp2(-inf) = 0 for a row's first visible key (o and the sum are 0 then anyway).
          const float correction =
              moves[m][h] ? fast_exp2((row_max[m][h] - new_max[m][h]) * multiplier) : 1.0f;
          row_max[m][h] = moves[m][h] ? new_max[m][h] : row_max[m][h];
          row_sum[m][h] *= correction;
          o.scale_row(m, h, correction);
        }
    }
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        row_sum[m][h] = exponentiate_row(s, m, h, multiplier, scaled_max(row_max[m][h], multiplier),
                                         row_sum[m][h]);
      }
  }

  // A row max in the log2 domain. A row that has seen only masked scores keeps max -inf;
  // subtracting 0 instead of -inf keeps exp2 at 0 rather than NaN.
  __device__ __forceinline__ static float scaled_max(float max, float multiplier) {
    return max == -INFINITY ? 0.0f : max * multiplier;
  }

  // Row (m, h) of s turned into exp2(x * multiplier - max_scaled) in place; returns sum plus
  // them.
  template <int kN>
  __device__ __forceinline__ static float exponentiate_row(AccTile<kM, kN>& s, int m, int h,
                                                           float multiplier, float max_scaled,
                                                           float sum) {
#pragma unroll
    for (int n = 0; n < kN; ++n)
#pragma unroll
      for (int e = 2 * h; e < 2 * h + 2; ++e) {
        const float p = fast_exp2(s.v[m][n][e] * multiplier - max_scaled);
        s.v[m][n][e] = p;
        sum += p;
      }
    return sum;
  }

  // Each row's sum of probabilities over this warp's keys (reduced over the lane quad).
  __device__ __forceinline__ void row_sums(float (&sums)[kM][2]) const {
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) sums[m][h] = quad_sum(row_sum[m][h]);
  }

  // After the last tile: scales o by extra / row_sum (0 for rows that saw no key) and returns
  // each row's natural-log LSE in lse (+inf for rows that saw no key).
  template <int kD>
  __device__ __forceinline__ void finish(AccTile<kM, kD>& o, float multiplier, float extra,
                                         float (&lse)[kM][2]) {
    float sums[kM][2];
    row_sums(sums);
    finish(o, multiplier, extra, lse, sums);
  }

  // The same with the rows' whole sums given (warps that share rows: the sum of their
  // row_sums).
  template <int kD>
  __device__ __forceinline__ void finish(AccTile<kM, kD>& o, float multiplier, float extra,
                                         float (&lse)[kM][2], const float (&sums)[kM][2]) {
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float sum = sums[m][h];
        const bool seen = sum > 0.0f;
        const float inverse = seen ? extra / sum : 0.0f;
        // The hardware's approximate log2 (lg2.approx: ~2^-22 relative error, far below what
        // the LSE is checked to) in place of logf's ~40 instructions, four rows a thread in the
        // pair-split d256 kernel. Measured on the H200 (bench/NOTES.md, session 11): within
        // 0.2% of logf at d128 / d256, s512 to 16k. (__fdividef in place of the IEEE division
        // made ptxas spill 24 B in that kernel.)
        lse[m][h] =
            seen ? (row_max[m][h] * multiplier + __log2f(sum)) * 0.69314718055994531f : INFINITY;
        o.scale_row(m, h, inverse);
      }
  }
};

}  // namespace flashattn::cuda
