// Warp-level GEMMs on mma.sync m16n8k16 over swizzled shared-memory tiles: the building
// blocks of the sm80 forward (S = Q K^T, O += P V) and backward kernels.
#pragma once

#include <cstdint>

#include "cuda/common/ptx.cuh"
#include "cuda/common/register_tile.cuh"

namespace flashattn::cuda_sm80 {

using cuda::AccTile;

// S = Q K^T for one warp's rows over the whole tile width. With kPrefetch the fragments are
// loaded one mma step ahead (double-buffered registers) so that ldmatrix latency hides behind
// the tensor cores; without, each is loaded right before its use.
template <typename T, int kWidth, bool kPrefetch, int kMTiles, int kNTiles, typename QLanes,
          typename KLanes>
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
    }
  }
}

// O += P V for one warp's rows: P comes from registers (the score accumulators as A
// fragments), V through ldmatrix.trans, one step ahead with kPrefetch.
template <typename T, int kWidth, bool kPrefetch, int kMTiles, int kKSteps, int kDTiles,
          typename VLanes>
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
    }
  }
}

// acc (one m16 tile, 2 * kPairs n8 tiles) += A (16 x 16 kKSteps) * B (16 kKSteps x ...).
// A's fragments come from load_a(kk, regs) for k-step kk (ldmatrix from shared memory, plain
// or transposed); B is stored k-major (row k holds B[k, :]) and read with ldmatrix.trans:
// pair j (16 columns) at column chunk kChunkStride * j of b_lanes, whose per-lane chunk may
// carry a fixed offset (a warp's share of the head dim). Both operands are loaded one step
// ahead so that ldmatrix latency hides behind the tensor cores.
template <typename T, int kKSteps, int kPairs, int kChunkStride, typename LoadA, typename BLanes>
__device__ __forceinline__ void gemm_loaded_a(AccTile<1, 2 * kPairs>& acc, const LoadA& load_a,
                                              const BLanes& b_lanes) {
  constexpr int kSteps = kKSteps * kPairs;
  uint32_t a[2][4];
  uint32_t b[2][4];
  load_a(0, a[0]);
  cuda::ldmatrix_x4_trans(b[0], b_lanes.at(0, 0));
#pragma unroll
  for (int kk = 0; kk < kKSteps; ++kk) {
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int step = kk * kPairs + j;
      if (step + 1 < kSteps) {
        const int next_kk = (step + 1) / kPairs;
        const int next_j = (step + 1) % kPairs;
        if (next_j == 0) load_a(next_kk, a[next_kk % 2]);
        cuda::ldmatrix_x4_trans(b[(step + 1) % 2], b_lanes.at(16 * next_kk, kChunkStride * next_j));
      }
      cuda::mma_16816<T>(acc.v[0][2 * j], a[kk % 2], b[step % 2][0], b[step % 2][1]);
      cuda::mma_16816<T>(acc.v[0][2 * j + 1], a[kk % 2], b[step % 2][2], b[step % 2][3]);
    }
  }
}

// Two independent products of the gemm_qk form in one loop, s += A1 B1^T and p += A2 B2^T
// (one m16 tile each, contraction over kWidth): two accumulation chains interleaved give
// the tensor cores twice the independent work between ldmatrix waits.
template <typename T, int kWidth, int kNTiles, typename ALanes, typename BLanes>
__device__ __forceinline__ void gemm_qk_dual(AccTile<1, kNTiles>& s, const ALanes& a1_lanes,
                                             const BLanes& b1_lanes, AccTile<1, kNTiles>& p,
                                             const ALanes& a2_lanes, const BLanes& b2_lanes) {
  constexpr int kPairs = kNTiles / 2;
  constexpr int kSteps = (kWidth / 16) * kPairs;
  uint32_t a1[2][4], a2[2][4];
  uint32_t b1[2][4], b2[2][4];
  auto load = [&](int step) {
    const int kk = step / kPairs;
    const int j = step % kPairs;
    if (j == 0) {
      cuda::ldmatrix_x4(a1[kk % 2], a1_lanes.at(0, 2 * kk));
      cuda::ldmatrix_x4(a2[kk % 2], a2_lanes.at(0, 2 * kk));
    }
    cuda::ldmatrix_x4(b1[step % 2], b1_lanes.at(16 * j, 2 * kk));
    cuda::ldmatrix_x4(b2[step % 2], b2_lanes.at(16 * j, 2 * kk));
  };
  load(0);
#pragma unroll
  for (int step = 0; step < kSteps; ++step) {
    const int kk = step / kPairs;
    const int j = step % kPairs;
    if (step + 1 < kSteps) load(step + 1);
    cuda::mma_16816<T>(s.v[0][2 * j], a1[kk % 2], b1[step % 2][0], b1[step % 2][1]);
    cuda::mma_16816<T>(p.v[0][2 * j], a2[kk % 2], b2[step % 2][0], b2[step % 2][1]);
    cuda::mma_16816<T>(s.v[0][2 * j + 1], a1[kk % 2], b1[step % 2][2], b1[step % 2][3]);
    cuda::mma_16816<T>(p.v[0][2 * j + 1], a2[kk % 2], b2[step % 2][2], b2[step % 2][3]);
  }
}

}  // namespace flashattn::cuda_sm80
