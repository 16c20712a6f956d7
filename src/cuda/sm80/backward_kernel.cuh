// FlashAttention-2 backward on mma.sync (sm80 and newer): one block per K/V tile (and KV
// head), a loop over the query tiles of every query head of its group, P recomputed from Q, K
// and the saved LSE; dK and dV accumulate in registers, dQ in fp32 in the workspace.
//
// Per query tile, three phases:
//   1. each warp owns 16 keys (and, for wide heads, half the queries): S^T = K Q^T and
//      dP^T = V dO^T, then P^T and dS^T = P^T * (dP^T - delta) in registers; dS^T (and P^T
//      when phase 2 needs other warps' queries) is written to shared memory;
//   2. dV += P^T dO and dK += dS^T Q — straight from registers when a warp owns all the
//      queries of its keys (tile widths <= 128), else from shared memory with the head dim
//      split between warps (192, 256: the accumulators would not fit one warp's registers);
//   3. dQ (64 x width) = dS K, warps split along queries and head dim, added to the fp32
//      workspace with vector atomics — in key-block order under semaphores when deterministic.
// Working in the transposed orientation (keys as mma rows) is what lets phase 2 take P^T and
// dS^T as A fragments without a shuffle.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "common/philox.h"
#include "common/score_mods.h"
#include "cuda/common/ptx.cuh"
#include "cuda/common/register_tile.cuh"
#include "cuda/common/smem_tile.cuh"
#include "cuda/sm80/backward_args.h"
#include "cuda/sm80/backward_rows.cuh"
#include "cuda/sm80/element_type.cuh"
#include "cuda/sm80/sequence_view.cuh"
#include "cuda/sm80/warp_gemm.cuh"

namespace flashattn::cuda_sm80 {

using cuda::AccTile;
using cuda::GlobalRows;
using cuda::SmemTile;

template <int kWidth>
struct BackwardConfig {
  static constexpr int kBlockM = kBackwardBlockM;            // queries per inner step
  static constexpr int kBlockN = kWidth <= 128 ? 128 : 64;   // keys per block
  static constexpr int kWarps = 8;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kKeyTiles = kBlockN / 16;             // phases 1-2: 16 keys per warp
  static constexpr int kParts = kWarps / kKeyTiles;          // query parts (1), head-dim parts (2)
  static constexpr int kPartM = kBlockM / kParts;            // queries per warp in phase 1
  static constexpr int kPartWidth = kWidth / kParts;         // dK/dV columns per warp
  static constexpr bool kDirect = kParts == 1;               // phase 2 from registers
  static constexpr int kStages = kWidth <= 128 ? 2 : 1;      // Q/dO buffers (prefetch when 2)
  static constexpr int kDqMTiles = kBlockM / 16;             // phase 3: warps along queries...
  static constexpr int kDqParts = kWarps / kDqMTiles;        // ...and along the head dim
  static constexpr int kDqPartWidth = kWidth / kDqParts;

  using KvTile = SmemTile<kBlockN, kWidth>;
  using QTile = SmemTile<kBlockM, kWidth>;
  using ScoreTile = SmemTile<kBlockN, kBlockM>;  // P^T, dS^T: keys x queries
  static constexpr int kStatsBytes = kStages * 2 * kBlockM * 4;
  static constexpr int kSmemBytes = 2 * KvTile::kBytes + 2 * kStages * QTile::kBytes +
                                    (kDirect ? 1 : 2) * ScoreTile::kBytes + kStatsBytes;

  static_assert(kKeyTiles * kParts == kWarps && kDqMTiles * kDqParts == kWarps, "warp layout");
  static_assert(kBlockM <= 64, "phase 3 reads dS^T with per-lane chunks inside one panel");
  static_assert(kWidth % 32 == 0, "two head-dim parts interleave in 16-column pairs");
  static_assert(kParts <= 2 && kDqParts == 2, "part offsets fit inside one 64-column panel");
};

// Key blocks [first, last) that query block m sees, as the forward decides it: the pair
// (m, n) is visited iff first <= n < last. Shared by the visiting loop and the semaphore rank.
template <int kBlockM, int kBlockN>
__device__ __forceinline__ void key_block_range(const MaskSpec& mask, int m, int* first,
                                                int* last) {
  const int m0 = m * kBlockM;
  const int row_last = static_cast<int>(min(int64_t{m0 + kBlockM}, mask.seqlen_q)) - 1;
  const int64_t col_begin = mask.first_col(m0);
  const int64_t col_end = mask.last_col(row_last);
  *first = static_cast<int>(col_begin / kBlockN);
  *last = col_end > col_begin ? static_cast<int>((col_end + kBlockN - 1) / kBlockN) : *first;
}

template <typename T, int kWidth, bool kExtras>
__global__ void __launch_bounds__(BackwardConfig<kWidth>::kThreads, 1)
    backward_kernel(const __grid_constant__ BackwardKernelArgs args) {
  using Config = BackwardConfig<kWidth>;
  constexpr int kBlockM = Config::kBlockM;
  constexpr int kBlockN = Config::kBlockN;
  constexpr int kThreads = Config::kThreads;
  constexpr int kPartM = Config::kPartM;
  constexpr int kSTiles = kPartM / 8;                  // n8 tiles of a warp's S^T row
  constexpr int kAccTiles = Config::kPartWidth / 8;    // n8 tiles of a warp's dK / dV
  constexpr int kStages = Config::kStages;
  using KvTile = typename Config::KvTile;
  using QTile = typename Config::QTile;
  using ScoreTile = typename Config::ScoreTile;
  constexpr float kLog2e = 1.4426950408889634f;
  const ForwardKernelArgs& a = args.attention;

  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t k_tile = cuda::smem_address(smem);
  const uint32_t v_tile = k_tile + KvTile::kBytes;
  const uint32_t q_tiles = v_tile + KvTile::kBytes;                 // + stage * QTile::kBytes
  const uint32_t do_tiles = q_tiles + kStages * QTile::kBytes;      // + stage * QTile::kBytes
  const uint32_t ds_tile = do_tiles + kStages * QTile::kBytes;
  const uint32_t pt_tile = ds_tile + ScoreTile::kBytes;             // unused when kDirect
  const uint32_t stats_offset =
      2 * KvTile::kBytes + 2 * kStages * QTile::kBytes + (Config::kDirect ? 1 : 2) * ScoreTile::kBytes;
  // Per stage: kBlockM lse_log2 values then kBlockM delta values.
  const float* stats = reinterpret_cast<const float*>(smem + stats_offset);

  // Deterministic: key blocks add their dQ in descending order, so the highest key block
  // (the one with the fewest query blocks under a causal mask) goes first and each block
  // stays one step behind the one above it instead of every block waiting for block 0. A
  // block waits only for higher key blocks, which get lower block indices and are launched
  // first: the wait cannot deadlock. Otherwise the lowest (under causal: heaviest) goes first.
  const int n_block = args.semaphores != nullptr ? static_cast<int>(gridDim.x - 1 - blockIdx.x)
                                                 : static_cast<int>(blockIdx.x);
  const int b = blockIdx.y;
  const int h_kv = blockIdx.z;
  const int group = a.heads_q / a.heads_kv;
  const int h_first = h_kv * group;
  const SequenceView seq = sequence_view(a, b, h_first);
  const int n0 = n_block * kBlockN;
  if (n0 >= seq.len_k_rows) return;
  const bool varlen = a.cu_seqlens_q != nullptr;
  const MaskSpec mask{seq.len_q, seq.len_k, a.window_left, a.window_right};
  const int64_t diagonal = mask.diagonal();

  // The query blocks that see this key block: a contiguous range (the mask is a band).
  const int m_blocks = (seq.len_q + kBlockM - 1) / kBlockM;
  int m_begin = m_blocks;
  int m_end = 0;
  for (int m = 0; m < m_blocks; ++m) {
    int first, last;
    key_block_range<kBlockM, kBlockN>(mask, m, &first, &last);
    if (n_block >= first && n_block < last) {
      m_begin = min(m_begin, m);
      m_end = m + 1;
    }
  }
  const int m_count = max(0, m_end - m_begin);
  const int iterations = m_count * group;

  const T* k_base = static_cast<const T*>(a.k) + seq.k_offset + n0 * a.k_row_stride;
  const T* v_base = static_cast<const T*>(a.v) + seq.v_offset + n0 * a.v_row_stride;
  const int64_t dout_offset0 = query_rows_offset(a, seq, b, h_first, args.dout_batch_stride,
                                                 args.dout_row_stride, args.dout_head_stride);
  const int64_t slot_first = workspace_slot0(args, seq, b, h_first);

  auto load_query_tiles = [&](int iteration) {
    const int head = iteration / m_count;  // within the group
    const int m0 = (m_begin + iteration % m_count) * kBlockM;
    const int stage = kStages == 2 ? iteration % 2 : 0;
    const T* q = static_cast<const T*>(a.q) + seq.q_offset + head * a.q_head_stride +
                 m0 * a.q_row_stride;
    const T* dout = static_cast<const T*>(args.dout) + dout_offset0 +
                    head * args.dout_head_stride + m0 * args.dout_row_stride;
    cuda::load_tile<kBlockM, kWidth, kThreads>(
        q_tiles + stage * QTile::kBytes,
        GlobalRows<const T>{q, a.q_row_stride, seq.len_q - m0, a.head_dim, a.vectorized_q});
    cuda::load_tile<kBlockM, kWidth, kThreads>(
        do_tiles + stage * QTile::kBytes,
        GlobalRows<const T>{dout, args.dout_row_stride, seq.len_q - m0, a.head_dim_v,
                            args.vectorized_dout});
    const int tid = static_cast<int>(threadIdx.x);
    if (tid < 2 * kBlockM) {
      const int row = tid % kBlockM;
      const float* source = tid < kBlockM ? args.lse_log2 : args.delta;
      const int64_t slot = slot_first + head * args.rows_total + m0 + row;
      const bool valid = m0 + row < seq.len_q;
      cuda::cp_async_4(cuda::smem_address(stats + stage * 2 * kBlockM + tid),
                       valid ? source + slot : source, valid ? 4 : 0);
    }
  };

  // K and V rows past the used keys read as zeros: seqused_k may leave garbage there.
  cuda::load_tile<kBlockN, kWidth, kThreads>(
      k_tile, GlobalRows<const T>{k_base, a.k_row_stride, seq.len_k - n0, a.head_dim, a.vectorized_k});
  cuda::load_tile<kBlockN, kWidth, kThreads>(
      v_tile,
      GlobalRows<const T>{v_base, a.v_row_stride, seq.len_k - n0, a.head_dim_v, a.vectorized_v});
  if (iterations > 0) load_query_tiles(0);
  cuda::cp_async_commit();

  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane / 4;
  const int t = lane % 4;
  const int key_row0 = (warp % Config::kKeyTiles) * 16;  // phases 1-2
  const int part = warp / Config::kKeyTiles;             // query part / head-dim part
  const int q0 = Config::kDirect ? 0 : part * kPartM;
  const int dq_mtile = warp % Config::kDqMTiles;         // phase 3
  const int dq_part = warp / Config::kDqMTiles;

  const auto k_lanes_a = KvTile::lane_addresses(k_tile, key_row0 + lane % 16, lane / 16);
  const auto v_lanes_a = KvTile::lane_addresses(v_tile, key_row0 + lane % 16, lane / 16);
  const auto k_lanes_b = KvTile::lane_addresses(k_tile, lane % 16, lane / 16 + 2 * dq_part);
  // Stage 0 of Q and dO: as the B operand of phase 1 (rows = queries of this warp's part) and
  // transposed as the B operand of phase 2 (rows = queries, chunks offset by the d part).
  const auto q_lanes_b0 =
      QTile::lane_addresses(q_tiles, q0 + lane % 8 + (lane / 16) * 8, (lane / 8) % 2);
  const auto do_lanes_b0 =
      QTile::lane_addresses(do_tiles, q0 + lane % 8 + (lane / 16) * 8, (lane / 8) % 2);
  const int phase2_chunk = Config::kDirect ? 0 : 2 * part;
  const auto q_lanes_t0 = QTile::lane_addresses(q_tiles, lane % 16, lane / 16 + phase2_chunk);
  const auto do_lanes_t0 = QTile::lane_addresses(do_tiles, lane % 16, lane / 16 + phase2_chunk);
  const auto ds_lanes_a =
      ScoreTile::lane_addresses(ds_tile, lane % 8 + (lane / 16) * 8, (lane / 8) % 2 + 2 * dq_mtile);
  const auto dst_lanes_a = ScoreTile::lane_addresses(ds_tile, key_row0 + lane % 16, lane / 16);
  const auto pt_lanes_a = ScoreTile::lane_addresses(pt_tile, key_row0 + lane % 16, lane / 16);

  const float scale_log2 = a.softmax_scale * kLog2e;
  const bool dropout = kExtras && a.dropout_p > 0.0f;
  const float keep_scale = dropout ? 1.0f / (1.0f - a.dropout_p) : 1.0f;

  AccTile<1, kAccTiles> dv_acc;
  AccTile<1, kAccTiles> dk_acc;
  dv_acc.zero();
  dk_acc.zero();

  for (int iteration = 0; iteration < iterations; ++iteration) {
    const int head = iteration / m_count;
    const int h = h_first + head;
    const int m_block = m_begin + iteration % m_count;
    const int m0 = m_block * kBlockM;
    const int stage = kStages == 2 ? iteration % 2 : 0;
    const float* lse_stage = stats + stage * 2 * kBlockM;
    const float* delta_stage = lse_stage + kBlockM;

    if constexpr (kStages == 1) {
      if (iteration > 0) {
        __syncthreads();  // every warp is done with the previous tiles
        load_query_tiles(iteration);
        cuda::cp_async_commit();
      }
    }
    cuda::cp_async_wait<0>();
    __syncthreads();  // this step's tiles have landed; the previous step is done everywhere
    if constexpr (kStages == 2) {
      if (iteration + 1 < iterations) {
        load_query_tiles(iteration + 1);
        cuda::cp_async_commit();
      }
    }

    // ---- Phase 1: S^T, P^T, dP^T, dS^T for this warp's 16 keys x kPartM queries.
    const uint32_t stage_bytes = stage * QTile::kBytes;
    AccTile<1, kSTiles> s;
    AccTile<1, kSTiles> dp;
    s.zero();
    dp.zero();
    // Plain: S^T and dP^T in one interleaved loop. Extras: dP^T after P (below), which keeps
    // the per-element softcap gradients and dP^T from being live at once (they spilled).
    if constexpr (kExtras) {
      gemm_qk<T, kWidth, true>(s, k_lanes_a, q_lanes_b0.shifted(stage_bytes));
    } else {
      gemm_qk_dual<T, kWidth>(s, k_lanes_a, q_lanes_b0.shifted(stage_bytes), dp, v_lanes_a,
                              do_lanes_b0.shifted(stage_bytes));
    }

    const int row_last = min(m0 + kBlockM, seq.len_q) - 1;
    const bool needs_mask = m0 + kBlockM > seq.len_q || mask.first_col(row_last) > n0 ||
                            mask.last_col(m0) < n0 + kBlockN;
    float alibi_slope = 0.0f;
    if constexpr (kExtras) {
      if (a.alibi_slopes != nullptr) alibi_slope = a.alibi_slopes[b * a.alibi_batch_stride + h];
    }
    // Element e of n8 tile n: key n0 + key_row0 + g + 8 (e / 2), query m0 + q0 + 8n + 2t + e % 2.
    float grad[kExtras ? kSTiles : 1][4];  // d(modified score)/d(dot) per element (extras)
    uint32_t kept_bits = 0;                // dropout: bit 4n + e set when kept
#pragma unroll
    for (int n = 0; n < kSTiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int query = m0 + q0 + 8 * n + 2 * t + e % 2;
        const int key = n0 + key_row0 + g + 8 * (e / 2);
        float x;  // log2-domain score
        if constexpr (kExtras) {
          const float bias = alibi_bias(alibi_slope, query, key, diagonal);
          const float score = modified_score(s.v[0][n][e], a.softmax_scale, a.softcap, bias);
          grad[n][e] = modified_score_grad(score - bias, a.softmax_scale, a.softcap);
          x = score * kLog2e;
        } else {
          x = s.v[0][n][e] * scale_log2;
        }
        if (needs_mask) {
          const bool visible = query < seq.len_q && key >= mask.first_col(query) &&
                               key < mask.last_col(query);
          if (!visible) x = -INFINITY;
        }
        const float2 lse = *reinterpret_cast<const float2*>(lse_stage + q0 + 8 * n + 2 * t);
        s.v[0][n][e] = cuda::fast_exp2(x - (e % 2 == 0 ? lse.x : lse.y));
        if (dropout) {
          // Resolved at the use (kept live across the loop, the key cost spills).
          const DropoutKey philox_key = dropout_key(a.dropout_seed_offset, a.dropout_seed, a.dropout_offset);
          const Philox4 words = dropout_random_words(
              philox_key.seed, philox_key.offset, static_cast<uint32_t>(b * a.heads_q + h),
              static_cast<uint32_t>(query), static_cast<uint32_t>(key) >> 2);
          if (philox_word(words, key & 3) < a.keep_threshold) kept_bits |= 1u << (4 * n + e);
        }
      }
    }
    auto dropped = [&](float p, int n, int e) {
      return dropout && !(kept_bits >> (4 * n + e) & 1u) ? 0.0f : p;
    };

    if constexpr (Config::kDirect) {
      // dV += P~^T dO (P~: P with the dropped elements zeroed; 1 / (1 - p) at the end).
      uint32_t pt[1][kSTiles / 2][4];
#pragma unroll
      for (int j = 0; j < kSTiles / 2; ++j) {
        pt[0][j][0] = cuda::pack2<T>(dropped(s.v[0][2 * j][0], 2 * j, 0), dropped(s.v[0][2 * j][1], 2 * j, 1));
        pt[0][j][1] = cuda::pack2<T>(dropped(s.v[0][2 * j][2], 2 * j, 2), dropped(s.v[0][2 * j][3], 2 * j, 3));
        pt[0][j][2] = cuda::pack2<T>(dropped(s.v[0][2 * j + 1][0], 2 * j + 1, 0),
                                     dropped(s.v[0][2 * j + 1][1], 2 * j + 1, 1));
        pt[0][j][3] = cuda::pack2<T>(dropped(s.v[0][2 * j + 1][2], 2 * j + 1, 2),
                                     dropped(s.v[0][2 * j + 1][3], 2 * j + 1, 3));
      }
      gemm_pv<T, kWidth, true>(dv_acc, pt, do_lanes_t0.shifted(stage_bytes));
    } else {
#pragma unroll
      for (int n = 0; n < kSTiles; ++n)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const uint32_t word =
              cuda::pack2<T>(dropped(s.v[0][n][2 * hh], n, 2 * hh), dropped(s.v[0][n][2 * hh + 1], n, 2 * hh + 1));
          asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(
                           pt_tile + ScoreTile::offset(key_row0 + g + 8 * hh, q0 / 8 + n) + 4 * t),
                       "r"(word));
        }
    }

    if constexpr (kExtras) gemm_qk<T, kWidth, true>(dp, v_lanes_a, do_lanes_b0.shifted(stage_bytes));
    // dS = P * (dP - delta), dP taken through the dropout mask and its 1 / (1 - p).
#pragma unroll
    for (int n = 0; n < kSTiles; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float dp_kept = dropped(dp.v[0][n][e], n, e) * keep_scale;
        const float2 delta = *reinterpret_cast<const float2*>(delta_stage + q0 + 8 * n + 2 * t);
        float ds = s.v[0][n][e] * (dp_kept - (e % 2 == 0 ? delta.x : delta.y));
        if constexpr (kExtras) ds *= grad[n][e];
        dp.v[0][n][e] = ds;
      }
#pragma unroll
    for (int n = 0; n < kSTiles; ++n)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const uint32_t word = cuda::pack2<T>(dp.v[0][n][2 * hh], dp.v[0][n][2 * hh + 1]);
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(
                         ds_tile + ScoreTile::offset(key_row0 + g + 8 * hh, q0 / 8 + n) + 4 * t),
                     "r"(word));
      }
    if constexpr (Config::kDirect) {
      uint32_t dst[1][kSTiles / 2][4];
      cuda::to_a_fragments<T>(dp, dst);
      gemm_pv<T, kWidth, true>(dk_acc, dst, q_lanes_t0.shifted(stage_bytes));
    }
    __syncthreads();  // dS^T (and P^T) complete in shared memory

    // ---- Phase 2 (wide heads): dV += P~^T dO, dK += dS^T Q on this warp's head-dim part.
    if constexpr (!Config::kDirect) {
      constexpr int kKSteps = kBlockM / 16;
      constexpr int kPairs = Config::kPartWidth / 16;
      const auto load_pt = [&](int kk, uint32_t(&r)[4]) { cuda::ldmatrix_x4(r, pt_lanes_a.at(0, 2 * kk)); };
      const auto load_dst = [&](int kk, uint32_t(&r)[4]) { cuda::ldmatrix_x4(r, dst_lanes_a.at(0, 2 * kk)); };
      gemm_loaded_a<T, kKSteps, kPairs, 4>(dv_acc, load_pt, do_lanes_t0.shifted(stage_bytes));
      gemm_loaded_a<T, kKSteps, kPairs, 4>(dk_acc, load_dst, q_lanes_t0.shifted(stage_bytes));
    }

    // ---- Phase 3: dQ (16 queries x kDqPartWidth per warp) = dS K, added to the workspace.
    {
      constexpr int kKSteps = kBlockN / 16;
      constexpr int kPairs = Config::kDqPartWidth / 16;
      AccTile<1, 2 * kPairs> dq;
      dq.zero();
      const auto load_ds = [&](int kk, uint32_t(&r)[4]) {
        cuda::ldmatrix_x4_trans(r, ds_lanes_a.at(16 * kk, 0));
      };
      gemm_loaded_a<T, kKSteps, kPairs, 4>(dq, load_ds, k_lanes_b);
      int* semaphore = nullptr;
      int rank = 0;
      if (args.semaphores != nullptr) {
        // Deterministic: key blocks add to this query block one at a time, highest first.
        int first, last;
        key_block_range<kBlockM, kBlockN>(mask, m_block, &first, &last);
        rank = last - 1 - n_block;
        semaphore = args.semaphores + (int64_t{b} * a.heads_q + h) * args.m_blocks + m_block;
        if (threadIdx.x == 0) {
          while (cuda::load_acquire(semaphore) != rank) {
          }
        }
        __syncthreads();
      }
      float* dq_rows = args.dq_accum + (slot_first + head * args.rows_total + m0) * args.dq_accum_width +
                       16 * dq_part;
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int row = dq_mtile * 16 + g + 8 * hh;
        if (m0 + row < seq.len_q) {
#pragma unroll
          for (int n = 0; n < 2 * kPairs; ++n) {
            cuda::red_add_f32x2(dq_rows + row * args.dq_accum_width + 32 * (n / 2) + 8 * (n % 2) + 2 * t,
                                dq.v[0][n][2 * hh], dq.v[0][n][2 * hh + 1]);
          }
        }
      }
      if (semaphore != nullptr) {
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) cuda::store_release(semaphore, rank + 1);
      }
    }
  }

  // Epilogue: scale, stage dK / dV through the K / V tiles, store coalesced. Keys that no
  // query sees (and rows past seqused_k) get zeros.
  const float dk_scale = kExtras ? 1.0f : a.softmax_scale;
  cuda::cp_async_wait<0>();
  __syncthreads();
#pragma unroll
  for (int d = 0; d < kAccTiles; ++d)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int row = key_row0 + g + 8 * hh;
      // Direct: tile d is chunk d; split: pair d / 2 of part p is chunks 4 (d / 2) + 2p + 0..1.
      const int chunk = Config::kDirect ? d : 4 * (d / 2) + 2 * part + d % 2;
      const uint32_t dk_word =
          cuda::pack2<T>(dk_acc.v[0][d][2 * hh] * dk_scale, dk_acc.v[0][d][2 * hh + 1] * dk_scale);
      const uint32_t dv_word = cuda::pack2<T>(dv_acc.v[0][d][2 * hh] * keep_scale,
                                              dv_acc.v[0][d][2 * hh + 1] * keep_scale);
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(k_tile + KvTile::offset(row, chunk) + 4 * t),
                   "r"(dk_word));
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(v_tile + KvTile::offset(row, chunk) + 4 * t),
                   "r"(dv_word));
    }
  __syncthreads();
  const int64_t k_row_base = varlen ? seq.k_row0 : 0;
  T* dk = static_cast<T*>(args.dk) + (varlen ? 0 : b * args.dk_batch_stride) +
          (k_row_base + n0) * args.dk_row_stride + h_kv * args.dk_head_stride;
  T* dv = static_cast<T*>(args.dv) + (varlen ? 0 : b * args.dv_batch_stride) +
          (k_row_base + n0) * args.dv_row_stride + h_kv * args.dv_head_stride;
  cuda::store_tile<kBlockN, kWidth, kThreads>(
      k_tile, GlobalRows<T>{dk, args.dk_row_stride, seq.len_k_rows - n0, a.head_dim, args.vectorized_dk});
  cuda::store_tile<kBlockN, kWidth, kThreads>(
      v_tile, GlobalRows<T>{dv, args.dv_row_stride, seq.len_k_rows - n0, a.head_dim_v, args.vectorized_dv});
}

template <DType kDType, int kWidth, bool kExtras>
Status launch_backward_main(const BackwardKernelArgs& args, cudaStream_t stream) {
  using Config = BackwardConfig<kWidth>;
  using T = typename ElementOf<kDType>::type;
  auto* kernel = &backward_kernel<T, kWidth, kExtras>;
  static std::atomic<uint64_t> raised_on_devices{0};
  if (Status status = raise_smem_limit(reinterpret_cast<const void*>(kernel), Config::kSmemBytes,
                                       raised_on_devices, "cuda backward");
      !status.ok()) {
    return status;
  }
  const ForwardKernelArgs& a = args.attention;
  const dim3 grid((a.seqlen_k + Config::kBlockN - 1) / Config::kBlockN, a.batch, a.heads_kv);
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return Status::Ok();
  kernel<<<grid, Config::kThreads, Config::kSmemBytes, stream>>>(args);
  const cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) {
    return {StatusCode::cuda_error,
            std::string("cuda backward: kernel launch failed: ") + cudaGetErrorString(error)};
  }
  return Status::Ok();
}

}  // namespace flashattn::cuda_sm80
