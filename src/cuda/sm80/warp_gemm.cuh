// Warp-level GEMMs on mma.sync m16n8k16 over swizzled shared-memory tiles: the building
// blocks of the sm80 forward (S = Q K^T, O += P V) and backward kernels.
#pragma once

#include <cstdint>

#include "cuda/common/ptx.cuh"
#include "cuda/common/register_tile.cuh"

namespace flashattn::cuda_sm80 {

using cuda::AccTile;

// A __syncwarp after every kLoadWindow mma steps (0: none), which shared loads cannot cross, so
// that ptxas cannot hoist a product's ldmatrix far ahead of its mma (ForwardConfig::kLoadWindow,
// BackwardConfig::kLoadWindowSdp / Dkv).
template <int kLoadWindow>
__device__ __forceinline__ void load_window(int step) {
  constexpr int kEvery = kLoadWindow > 0 ? kLoadWindow : 1;  // (no % 0 to warn about)
  if constexpr (kLoadWindow > 0) {
    if ((step + 1) % kEvery == 0) __syncwarp();
  }
}

// S = Q K^T for one warp's rows over the whole tile width. With kPrefetch the fragments are
// loaded one mma step ahead (double-buffered registers) so that ldmatrix latency hides behind
// the tensor cores; without, each is loaded right before its use. kLoadWindow: load_window.
template <typename T, int kWidth, bool kPrefetch, int kLoadWindow, int kMTiles, int kNTiles,
          typename QLanes, typename KLanes>
__device__ __forceinline__ void gemm_qk(AccTile<kMTiles, kNTiles>& s, const QLanes& q_lanes,
                                        const KLanes& k_lanes) {
  constexpr int kPairs = kNTiles / 2;
  constexpr int kSteps = (kWidth / 16) * kPairs;
  uint32_t a[2][kMTiles][4];
  uint32_t b[2][4];
  auto load_a = [&](int kk) {
#pragma unroll
    for (int m = 0; m < kMTiles; ++m) cuda::ldmatrix_x4(a[kk % 2][m], q_lanes.at(m * 16, 2 * kk));
  };
  auto load_b = [&](int step) {
    cuda::ldmatrix_x4(b[step % 2], k_lanes.at(16 * (step % kPairs), 2 * (step / kPairs)));
  };
  if constexpr (kPrefetch) {
    load_a(0);
    load_b(0);
  }
#pragma unroll
  for (int kk = 0; kk < kWidth / 16; ++kk) {
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int step = kk * kPairs + j;
      if constexpr (kPrefetch) {
        if (step + 1 < kSteps) {
          if (j + 1 == kPairs) load_a(kk + 1);
          load_b(step + 1);
        }
      } else {
        if (j == 0) load_a(kk);
        load_b(step);
      }
#pragma unroll
      for (int m = 0; m < kMTiles; ++m) {
        cuda::mma_16816<T>(s.v[m][2 * j], a[kk % 2][m], b[step % 2][0], b[step % 2][1]);
        cuda::mma_16816<T>(s.v[m][2 * j + 1], a[kk % 2][m], b[step % 2][2], b[step % 2][3]);
      }
      load_window<kLoadWindow>(step);
    }
  }
}

// O += P V for one warp's rows: P comes from registers (the score accumulators as A
// fragments), V through ldmatrix.trans, one step ahead with kPrefetch.
template <typename T, int kWidth, bool kPrefetch, int kLoadWindow, int kMTiles, int kKSteps,
          int kDTiles, typename VLanes>
__device__ __forceinline__ void gemm_pv(AccTile<kMTiles, kDTiles>& o,
                                        const uint32_t (&p)[kMTiles][kKSteps][4],
                                        const VLanes& v_lanes) {
  constexpr int kPairs = kDTiles / 2;
  constexpr int kSteps = kKSteps * kPairs;
  uint32_t b[2][4];
  auto load_b = [&](int step) {
    cuda::ldmatrix_x4_trans(b[step % 2], v_lanes.at(16 * (step / kPairs), 2 * (step % kPairs)));
  };
  if constexpr (kPrefetch) load_b(0);
#pragma unroll
  for (int kk = 0; kk < kKSteps; ++kk) {
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int step = kk * kPairs + j;
      if constexpr (kPrefetch) {
        if (step + 1 < kSteps) load_b(step + 1);
      } else {
        load_b(step);
      }
#pragma unroll
      for (int m = 0; m < kMTiles; ++m) {
        cuda::mma_16816<T>(o.v[m][2 * j], p[m][kk], b[step % 2][0], b[step % 2][1]);
        cuda::mma_16816<T>(o.v[m][2 * j + 1], p[m][kk], b[step % 2][2], b[step % 2][3]);
      }
      load_window<kLoadWindow>(step);
    }
  }
}

// Fragment loaders for warp_gemm from a swizzled tile's per-lane ldmatrix addresses, one per
// way an operand can be stored:
//   a_rows:    A's rows are the tile's rows (lanes as lane % 16, chunk lane / 16);
//   a_columns: A is the tile's transpose (lanes as lane % 8 + 8 (lane / 16), chunk (lane / 8) % 2);
//   b_rows:    B's columns are the tile's rows, k along the row (lanes as for a_columns);
//   b_columns: B's rows (k) are the tile's rows (lanes as for a_rows).
template <typename Lanes>
__device__ __forceinline__ auto a_rows(const Lanes& lanes) {
  return
      [lanes](int kk, int m, uint32_t(&r)[4]) { cuda::ldmatrix_x4(r, lanes.at(16 * m, 2 * kk)); };
}
template <typename Lanes>
__device__ __forceinline__ auto a_columns(const Lanes& lanes) {
  return [lanes](int kk, int m, uint32_t(&r)[4]) {
    cuda::ldmatrix_x4_trans(r, lanes.at(16 * kk, 2 * m));
  };
}
template <typename Lanes>
__device__ __forceinline__ auto b_rows(const Lanes& lanes) {
  return
      [lanes](int kk, int j, uint32_t(&r)[4]) { cuda::ldmatrix_x4(r, lanes.at(16 * j, 2 * kk)); };
}
template <typename Lanes>
__device__ __forceinline__ auto b_columns(const Lanes& lanes) {
  return [lanes](int kk, int j, uint32_t(&r)[4]) {
    cuda::ldmatrix_x4_trans(r, lanes.at(16 * kk, 2 * j));
  };
}

// acc (kMTiles m16 tiles x 2 kPairs n8 tiles) += A (16 kMTiles x 16 kKSteps) B (16 kKSteps x
// 16 kPairs), the fragments from two loaders: load_a(kk, m, regs) gives A's m16 x k16 block
// (m, kk), load_b(kk, j, regs) B's k16 x n16 block (kk, j) as {b0, b1} of n8 tile 2j and
// {b2, b3} of n8 tile 2j + 1. Where each comes from (ldmatrix plain or transposed, which tile)
// is the caller's; both are loaded one step ahead so that ldmatrix latency hides behind the
// tensor cores. after_step(step), if given, runs after each step's mma (steps 0 ..
// kKSteps * kPairs - 1, a constant once unrolled): other work spread among the tensor-core
// instructions instead of issued in one burst.
struct NoStepWork {
  __device__ __forceinline__ void operator()(int) const {}
};
template <typename T, int kMTiles, int kKSteps, int kPairs, typename LoadA, typename LoadB,
          typename AfterStep = NoStepWork>
__device__ __forceinline__ void warp_gemm(AccTile<kMTiles, 2 * kPairs>& acc, const LoadA& load_a,
                                          const LoadB& load_b,
                                          const AfterStep& after_step = AfterStep{}) {
  constexpr int kSteps = kKSteps * kPairs;
  uint32_t a[2][kMTiles][4];
  uint32_t b[2][4];
  auto load_a_step = [&](int kk) {
#pragma unroll
    for (int m = 0; m < kMTiles; ++m) load_a(kk, m, a[kk % 2][m]);
  };
  load_a_step(0);
  load_b(0, 0, b[0]);
#pragma unroll
  for (int kk = 0; kk < kKSteps; ++kk) {
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int step = kk * kPairs + j;
      if (step + 1 < kSteps) {
        const int next_kk = (step + 1) / kPairs;
        const int next_j = (step + 1) % kPairs;
        if (next_j == 0) load_a_step(next_kk);
        load_b(next_kk, next_j, b[(step + 1) % 2]);
      }
#pragma unroll
      for (int m = 0; m < kMTiles; ++m) {
        cuda::mma_16816<T>(acc.v[m][2 * j], a[kk % 2][m], b[step % 2][0], b[step % 2][1]);
        cuda::mma_16816<T>(acc.v[m][2 * j + 1], a[kk % 2][m], b[step % 2][2], b[step % 2][3]);
      }
      after_step(step);
    }
  }
}

}  // namespace flashattn::cuda_sm80
