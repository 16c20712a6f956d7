// FlashAttention-2 backward on mma.sync (sm80 and newer): one block per K/V tile (and KV
// head), a loop over the query tiles of every query head of its group, P recomputed from Q, K
// and the saved LSE; dK and dV accumulate in registers, dQ in fp32 in the workspace.
//
// Per query tile, with FlashAttention-2's warp layouts (each GEMM tiled over the 8 warps on its
// own grid, the operands shared through shared memory):
//   1. S = Q K^T and dP = dO V^T, warps in a grid over queries x keys; then, per element,
//      P = exp2(S * scale - LSE) (dropped elements zeroed) and dS = P * (dP - delta), both
//      written to shared memory;
//   2. dV += P^T dO and dK += dS^T Q, warps in a grid over keys x head dim, P^T and dS^T read
//      with ldmatrix.trans;
//   3. dQ = dS K, warps in a grid over queries x head dim, added to the fp32 workspace (in
//      fragment order, DqTileLayout) with vector atomics, in key-block order under semaphores
//      when deterministic.
// Every warp reads only its own rows and columns of each operand, so a tile is read by a few
// warps rather than all eight (the layout FA2 found to balance the three phases).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "common/philox.h"
#include "common/score_mods.h"
#include "cuda/common/ptx.cuh"
#include "cuda/common/register_tile.cuh"
#include "cuda/common/smem_tile.cuh"
#include "cuda/sm80/backward_args.h"
#include "cuda/sm80/backward_rows.cuh"
#include "cuda/sm80/dropout_bits.cuh"
#include "cuda/sm80/element_type.cuh"
#include "cuda/sm80/score_modifiers.cuh"
#include "cuda/sm80/sequence_view.cuh"
#include "cuda/sm80/shared_memory.cuh"
#include "cuda/sm80/warp_gemm.cuh"

namespace flashattn::cuda_sm80 {

using cuda::AccTile;
using cuda::GlobalRows;
using cuda::SmemTile;

// A warp grid over an R x C product: kWarpsAlongRows warps along the rows, the rest along the
// columns; each warp owns a kRows x kCols block of whole m16 tiles and 16-column pairs.
template <int R, int C, int kWarps, int kWarpsAlongRows>
struct WarpGrid {
  static constexpr int kRows = R / kWarpsAlongRows;
  static constexpr int kCols = C / (kWarps / kWarpsAlongRows);
  static constexpr int kMTiles = kRows / 16;
  static constexpr int kPairs = kCols / 16;
  static_assert(kRows % 16 == 0 && kCols % 16 == 0, "whole m16 tiles and n16 pairs per warp");
  __device__ __forceinline__ static int row0(int warp) { return (warp % kWarpsAlongRows) * kRows; }
  __device__ __forceinline__ static int col0(int warp) { return (warp / kWarpsAlongRows) * kCols; }
};

// Two configurations per width: kRoomy, FlashAttention-2's choices for devices with the shared
// memory (sm80's 163 KB, sm90's 227 KB; Flash_bwd_kernel_traits), and a compact one for the rest
// (sm86 / sm89: 99 KB). Roomy:
//   - d <= 64: 128 queries a step (<64, 128, 128, 8, 4, 4, 4>, 162 KB): the step's fixed work
//     (barriers, statistics, bookkeeping) spread over twice the FLOPs;
//   - d 96, 128: <128, 64, 128, 8, 2, 4, 2> (160 KB at d128);
//   - d > 128: Q and dO double-buffered (<256, 64, 64, 8, 4, 2, 2>, 209 KB at d256): with one
//     buffer the next tiles' copy waits in the open, with nothing to hide it.
// Compact: 64 queries a step; d 96 / 128 take 64 keys a block and one Q/dO buffer (81 KB each:
// 96 columns are stored 128 wide, so two buffers at d96 took 113 KB, over sm86's 99 KB), d > 128
// one Q/dO buffer (145 KB at d256: sm80 only).
//
// The extras kernels (softcap, ALiBi, dropout: kExtras) keep more per element live through the
// P / dS loop (the softcap's tanh, the dropout bits). At d <= 64 they take 64 queries a step
// and no load windows (kLeanExtras): with the plain kernel's tiles ptxas sm90 spilled 388 B
// there, with these nothing. Measured on the H200 (bench/NOTES.md, session 15), bf16,
// same-process A/B against the plain tiles at d64: dropout +2.5-25%, softcap causal 0 to +12%
// and non-causal -2 to 0%. At d128 the lean tiles (64 keys a block) lost 4-20% (softcap) and up
// to 10% (dropout) although the plain ones spill 200 B, and at d256 no windows lost 1.5-2.7%:
// wider kernels keep the plain tiles.
// FLASHATTN_SM80_BWD_LEAN_EXTRAS=0: the plain tiles everywhere (A/B runs).
//
// Deterministic mode with the spread dQ adds: a warp releases its turn after dK's product (the
// adds have had that product's time to complete, so the release does not wait for them).
// Releasing right after dV's product, where the last add was issued, measured -1.1 / -2.7% at
// d128 s512 / 4k and +3.4 / -3.6% causal (H200, bench/NOTES.md, session 17).

#ifndef FLASHATTN_SM80_BWD_DROPOUT_APART
#define FLASHATTN_SM80_BWD_DROPOUT_APART 1
#endif

template <int kWidth, bool kRoomy, bool kExtras = false>
struct BackwardConfig {
#ifdef FLASHATTN_SM80_BWD_LEAN_EXTRAS
  static constexpr bool kLeanExtras =
      kExtras && kWidth <= 64 && FLASHATTN_SM80_BWD_LEAN_EXTRAS != 0;
#else
  static constexpr bool kLeanExtras = kExtras && kWidth <= 64;
#endif
  static constexpr bool kWide = kWidth > 128;
  static constexpr bool kTall = kRoomy && kWidth <= 64 && !kLeanExtras;  // 128 queries a step
  static constexpr bool kShort = kWide || ((!kRoomy || kLeanExtras) && kWidth > 64);  // 64 keys
  static constexpr int kBlockM = kTall ? 128 : 64;   // queries per inner step
  static constexpr int kBlockN = kShort ? 64 : 128;  // keys per block
  static constexpr int kWarps = 8;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kStages = kRoomy || kWidth <= 64 ? 2 : 1;  // Q/dO buffers (prefetch: 2)
  using Sdp = WarpGrid<kBlockM, kBlockN, kWarps, kShort || kTall ? 4 : 2>;  // queries x keys
  // dK, dV: keys x head dim; dQ: queries x head dim. Four warps along the head dim where that
  // leaves them whole 16-column pairs, else along the rows.
  static constexpr bool kFourColumnWarps = (kWidth / 4) % 16 == 0;
  // dQ = dS K before dV and dK, its adds spread among dV's steps (else after dK, in one
  // burst). Measured on the H200 (bench/NOTES.md, sessions 8 and 9), roomy, default mode:
  // d64 +3-6%, d256 +2-4%, d128 +0.1-0.8% (despite 72 B of spills there); deterministic mode:
  // +6-15% (each warp's release of its turn waits for its adds to complete: spread, they had
  // the dK product's time to). Compact kernels keep the burst (not measured).
  // FLASHATTN_SM80_BWD_DQ_SPREAD=0 / 1 forces it off / on everywhere (A/B runs).
#ifdef FLASHATTN_SM80_BWD_DQ_SPREAD
  static constexpr bool kSpreadDqAdds = FLASHATTN_SM80_BWD_DQ_SPREAD != 0;
#else
  static constexpr bool kSpreadDqAdds = kRoomy;
#endif
  // Deterministic mode without a mask: key blocks walk the query blocks from rotated starts
  // (BackwardKernelArgs::rotate_dq_order). Measured on the H200 (bench/NOTES.md, session 10),
  // bf16, deterministic: d64 +12% / +6% at s1k / 4k, d256 +18% / +6%; default mode unchanged
  // there. At d128 the rotation's code alone cost the default mode 3.5% (s1k, s4k) with the
  // same spills, and the deterministic mode gained only at s1k: so d96 / d128 keep the plain
  // walk, as do the compact kernels (not measured).
  // FLASHATTN_SM80_BWD_ROTATE=0 / 1 forces it off / on everywhere (A/B runs).
#ifdef FLASHATTN_SM80_BWD_ROTATE
  static constexpr bool kRotateWalks = FLASHATTN_SM80_BWD_ROTATE != 0;
#else
  static constexpr bool kRotateWalks = kRoomy && (kTall || kWide);
#endif
  // Lean mask test: the band's 64-bit bounds are worked out only with a window (~40 uniform
  // instructions a step). Measured with session 11's lean dQ adds on the H200 (bench/NOTES.md),
  // bf16: d64 +1-2%, d128 +1.5-3.4%; at d256 the mask test alone was within noise (session
  // 12); d192 +1.9-2.6% without a mask, -0.1 to +0.3% causal (session 17).
  // FLASHATTN_SM80_BWD_LEAN_MASK_TEST = 0 / 1 forces it off / on (A/B runs).
#ifdef FLASHATTN_SM80_BWD_LEAN_MASK_TEST
  static constexpr bool kLeanMaskTest = FLASHATTN_SM80_BWD_LEAN_MASK_TEST != 0;
#else
  static constexpr bool kLeanMaskTest = kWidth <= 192;
#endif
  // Load windows: a __syncwarp after every kLoadWindow* steps of a product, which shared loads
  // cannot cross, so ptxas cannot hoist a whole product's ldmatrix ahead of its first mma (ncu,
  // session 13, d64 s4k: ~27 ldmatrix issued back to back after the step's barrier, the warps
  // then stalled on the full MIO queue). Sdp: S and dP; Dkv: dQ, dV and dK; 0: no window.
  // Measured on the H200 (bench/NOTES.md, session 14), roomy, bf16, same-process A/B against no
  // windows: Dkv = 1 gives d64 +1.6-2.6%, d128 +1.5-2%, d256 +1.3-2.6% (2 and 4 gain less or
  // lose); Sdp = 1 adds to it at d64 (+3.9-5.6% together) and loses at d128 (spills). Compact
  // kernels keep none (not measured).
  // FLASHATTN_SM80_BWD_LOAD_WINDOW_SDP / _DKV = n forces n everywhere (A/B runs).
#ifdef FLASHATTN_SM80_BWD_LOAD_WINDOW_SDP
  static constexpr int kLoadWindowSdp = FLASHATTN_SM80_BWD_LOAD_WINDOW_SDP;
#else
  static constexpr int kLoadWindowSdp = kRoomy && kWidth <= 64 && !kLeanExtras ? 1 : 0;
#endif
#ifdef FLASHATTN_SM80_BWD_LOAD_WINDOW_DKV
  static constexpr int kLoadWindowDkv = FLASHATTN_SM80_BWD_LOAD_WINDOW_DKV;
#else
  static constexpr int kLoadWindowDkv = kRoomy && !kLeanExtras ? 1 : 0;
#endif
  using Dkv = WarpGrid<kBlockN, kWidth, kWarps, kBlockN == 128 || !kFourColumnWarps ? 4 : 2>;
  static constexpr int kDqWarpsAlongRows = kTall || !kFourColumnWarps ? 4 : 2;
  using Dq = WarpGrid<kBlockM, kWidth, kWarps, kDqWarpsAlongRows>;
  // dQ goes to the workspace in fragment order (DqTileLayout): each warp-wide vector atomic adds
  // a lane's four accumulator values of one m16 x n8 block to 512 contiguous bytes (4 cache
  // lines). Row-major, each of twice as many atomics (two values a lane) covered 8 rows: 8
  // lines. Measured on the H200 (bench/NOTES.md, session 12), bf16, same-process A/B against
  // the row-major adds: d64 +2.5-4%, d128 +4-8.5%, d256 +9-14.5%; deterministic +5-11%. (A
  // probe without any adds had put their cost at 10% / 14% / 24% of the step.)
  static constexpr DqTileLayout kDqLayout{kBlockM, Dq::kRows, Dq::kCols, kDqWarpsAlongRows};
  static_assert(kWorkspaceRowGap % kBlockM == 0,
                "a tile past its sequence stays in the gap (varlen) or the rounding (dense)");

  using KvTile = SmemTile<kBlockN, kWidth>;
  using QTile = SmemTile<kBlockM, kWidth>;
  using ScoreTile = SmemTile<kBlockM, kBlockN>;  // P, dS: queries x keys
  // K, V, the Q and dO stages, P, dS, then the per-row statistics.
  static constexpr int kStatsOffset =
      2 * KvTile::kBytes + 2 * kStages * QTile::kBytes + 2 * ScoreTile::kBytes;
  static constexpr int kStatsBytes = kStages * 2 * kBlockM * 4;
  // Then the rotation of the block's walk over the query blocks (rotate_dq_order).
  static constexpr int kRotationOffset = kStatsOffset + kStatsBytes;
  static constexpr int kSmemBytes = kRotationOffset + (kRotateWalks ? 4 : 0);

  // The semaphores and the workspace are laid out per kBackwardBlockM rows: a step of whole
  // such blocks indexes within them. One thread per statistic copies LSE and delta.
  static_assert(kBlockM % kBackwardBlockM == 0, "whole workspace query blocks per step");
  static_assert(2 * kBlockM <= kThreads, "one thread per LSE / delta value");
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

// The least m in [0, count) where a predicate that never turns false again along m holds
// (count where it holds nowhere).
template <typename Predicate>
__device__ __forceinline__ int first_block_where(int count, const Predicate& holds) {
  int low = 0;
  int high = count;
  while (low < high) {
    const int middle = (low + high) / 2;
    if (holds(middle)) {
      high = middle;
    } else {
      low = middle + 1;
    }
  }
  return low;
}

template <typename T, int kWidth, bool kExtras, bool kRoomy>
__global__ void __launch_bounds__(BackwardConfig<kWidth, kRoomy, kExtras>::kThreads, 1)
    backward_kernel(const __grid_constant__ BackwardKernelArgs args) {
  using Config = BackwardConfig<kWidth, kRoomy, kExtras>;
  using Sdp = typename Config::Sdp;
  using Dkv = typename Config::Dkv;
  using Dq = typename Config::Dq;
  constexpr int kBlockM = Config::kBlockM;
  constexpr int kBlockN = Config::kBlockN;
  constexpr int kThreads = Config::kThreads;
  constexpr int kStages = Config::kStages;
  using KvTile = typename Config::KvTile;
  using QTile = typename Config::QTile;
  using ScoreTile = typename Config::ScoreTile;
  const ForwardKernelArgs& a = args.attention;

  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t k_tile = cuda::smem_address(smem);
  const uint32_t v_tile = k_tile + KvTile::kBytes;
  const uint32_t q_tiles = v_tile + KvTile::kBytes;             // + stage * QTile::kBytes
  const uint32_t do_tiles = q_tiles + kStages * QTile::kBytes;  // + stage * QTile::kBytes
  const uint32_t p_tile = do_tiles + kStages * QTile::kBytes;
  const uint32_t ds_tile = p_tile + ScoreTile::kBytes;
  // Per stage: kBlockM lse_log2 values then kBlockM delta values.
  const float* stats = reinterpret_cast<const float*>(smem + Config::kStatsOffset);

  // Deterministic: key blocks add their dQ in descending order, so the highest key block
  // (the one with the fewest query blocks under a causal mask) goes first and each block
  // stays one step behind the one above it instead of every block waiting for block 0. A
  // block waits only for higher key blocks, which get lower block indices and are launched
  // first: the wait cannot deadlock. Otherwise the lowest (under causal: heaviest) goes first.
  // Rotated walks (rotate_dq_order) may wait for any key block of the sequence: the launch
  // sets it only where all of them fit on the GPU at once, and blocks of earlier sequences
  // and heads never wait for later ones, so those finish and make room.
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
  const bool banded = a.window_left >= 0 || a.window_right >= 0;
  const int64_t diagonal = mask.diagonal();

  // The query blocks that see this key block, [m_begin, m_end): exactly those m for which
  // key_block_range(m) holds n_block, found by two binary searches (a scan of every query
  // block cost ~3% at 4k). With cb(m) / ce(m) the first row's first and the last row's end
  // column, m sees this block iff cb(m) < n0 + kBlockN, ce(m) > n0 and cb(m) < ce(m); given
  // the first two, cb(m) < ce(m) <=> cb(m) < len_k, since windows are -1 or >= 0 (a block
  // with cb(m) < len_k is empty only if ce(m) <= 0, which ce(m) > n0 excludes). cb and ce
  // never decrease with m: the first condition and the third hold on a prefix, the second
  // on a suffix.
  const int m_blocks = (seq.len_q + kBlockM - 1) / kBlockM;
  const int64_t begin_limit = min(int64_t{n0 + kBlockN}, mask.seqlen_k);
  const int m_end = first_block_where(
      m_blocks, [&](int m) { return mask.first_col(int64_t{m} * kBlockM) >= begin_limit; });
  const int m_begin = first_block_where(m_end, [&](int m) {
    const int64_t row_last = min(int64_t{m + 1} * kBlockM, mask.seqlen_q) - 1;
    return mask.last_col(row_last) > n0;
  });
  const int m_count = m_end - m_begin;
  const int iterations = m_count * group;
  // Where this block's walk over the query blocks starts (per query head of the group): the
  // first, or rotated (BackwardKernelArgs::rotate_dq_order; no mask there, so every key
  // block of the sequence walks the same m_count blocks) by n_block * rotation_spacing.
  constexpr bool kRotate = Config::kRotateWalks;
  auto rotation_spacing = [&] {
    const int key_blocks = (seq.len_k + kBlockN - 1) / kBlockN;
    return kRotate && args.rotate_dq_order && m_count >= key_blocks ? m_count / key_blocks : 0;
  };
  const int rotation = n_block * rotation_spacing();
  int* const rotation_slot = reinterpret_cast<int*>(smem + Config::kRotationOffset);
  if (kRotate && threadIdx.x == 0) {
    *rotation_slot = rotation;  // read after the loop's first barrier
  }

  const T* k_base = static_cast<const T*>(a.k) + seq.k_offset + n0 * a.k_row_stride;
  const T* v_base = static_cast<const T*>(a.v) + seq.v_offset + n0 * a.v_row_stride;
  const int64_t dout_offset0 = query_rows_offset(a, seq, b, h_first, args.dout_batch_stride,
                                                 args.dout_row_stride, args.dout_head_stride);
  const int64_t slot_first = workspace_slot0(args, seq, b, h_first);

  // A step's query head (within the group) and place in the walk over the query blocks:
  // places inner, heads outer. Kept as counters (a division by m_count per step cost ~40
  // instructions of ~1000).
  struct Step {
    int head;
    int place;  // in [m_begin, m_end)
  };
  auto next_step = [&](Step step) {
    return step.place + 1 == m_end ? Step{step.head + 1, m_begin} : Step{step.head, step.place + 1};
  };
  // The query block of a place: the place itself, or moved on by `shift` (the rotation,
  // wrapping). The rotation is read back from shared memory: held in a register across the
  // loop, it made ptxas spill 16-28 B more at d128.
  auto query_block = [&](int place, int shift) {
    if (!kRotate) return place;
    const int m = place + shift;
    return m >= m_end ? m - m_end + m_begin : m;
  };
  auto load_query_tiles = [&](Step step, int stage, int shift) {
    const int head = step.head;
    const int m0 = query_block(step.place, shift) * kBlockM;
    const T* q =
        static_cast<const T*>(a.q) + seq.q_offset + head * a.q_head_stride + m0 * a.q_row_stride;
    const T* dout = static_cast<const T*>(args.dout) + dout_offset0 + head * args.dout_head_stride +
                    m0 * args.dout_row_stride;
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
      k_tile,
      GlobalRows<const T>{k_base, a.k_row_stride, seq.len_k - n0, a.head_dim, a.vectorized_k});
  cuda::load_tile<kBlockN, kWidth, kThreads>(
      v_tile,
      GlobalRows<const T>{v_base, a.v_row_stride, seq.len_k - n0, a.head_dim_v, a.vectorized_v});
  // The pre-pass's writes (LSE, delta, the cleared workspace) are read from here on
  // (FLASHATTN_SM80_BWD_PDL: this kernel may start before it has completed).
  wait_for_previous_kernel();
  if (iterations > 0) load_query_tiles(Step{0, m_begin}, 0, rotation);
  cuda::cp_async_commit();

  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane / 4;
  const int t = lane % 4;
  const int sdp_row0 = Sdp::row0(warp);  // phase 1: queries
  const int sdp_col0 = Sdp::col0(warp);  //          keys
  const int dkv_row0 = Dkv::row0(warp);  // phase 2: keys
  const int dkv_col0 = Dkv::col0(warp);  //          head dim
  const int dq_row0 = Dq::row0(warp);    // phase 3: queries
  const int dq_col0 = Dq::col0(warp);    //          head dim

  // Per-lane ldmatrix addresses, one set per (tile shape, access pattern); the second operand
  // of the same pattern (dO beside Q, V beside K, dS beside P) is the same set shifted by a
  // constant. The loaders of warp_gemm.cuh (a_rows, a_columns, b_rows, b_columns) say how
  // each product reads them.
  const auto q_lanes_a = QTile::lane_addresses(q_tiles, sdp_row0 + lane % 16, lane / 16);
  const auto k_lanes_b =
      KvTile::lane_addresses(k_tile, sdp_col0 + lane % 8 + (lane / 16) * 8, (lane / 8) % 2);
  const auto p_lanes_at =
      ScoreTile::lane_addresses(p_tile, lane % 8 + (lane / 16) * 8, (lane / 8) % 2 + dkv_row0 / 8);
  const auto q_lanes_bt = QTile::lane_addresses(q_tiles, lane % 16, lane / 16 + dkv_col0 / 8);
  const auto ds_lanes_a = ScoreTile::lane_addresses(ds_tile, dq_row0 + lane % 16, lane / 16);
  const auto k_lanes_bt = KvTile::lane_addresses(k_tile, lane % 16, lane / 16 + dq_col0 / 8);
  constexpr uint32_t kDoFromQ = kStages * QTile::kBytes;
  constexpr uint32_t kVFromK = KvTile::kBytes;
  constexpr uint32_t kDsFromP = ScoreTile::kBytes;

  const float scale_log2 = a.softmax_scale * kLog2e;
  const bool dropout = kExtras && a.dropout_p > 0.0f;
  const float keep_scale = dropout ? 1.0f / (1.0f - a.dropout_p) : 1.0f;
  // kDropoutApart: the extras kernel applies the dropout mask to dP before the element loop
  // and to P after it, each in the row's dropout branch, instead of a select per element in
  // the loop: without dropout (softcap, ALiBi) the loop then holds no dropout work. Measured on
  // the H200 (bench/NOTES.md, session 18), bf16, softcap 30, same-process A/B at s512 / 4k:
  // d64 +4.7-6.0%, d128 +5.2-6.8%, d256 +0.7-1.3%. FLASHATTN_SM80_BWD_DROPOUT_APART=0: the
  // select per element (A/B runs).
  constexpr bool kDropoutApart = kExtras && FLASHATTN_SM80_BWD_DROPOUT_APART != 0;

  AccTile<Dkv::kMTiles, 2 * Dkv::kPairs> dv_acc;
  AccTile<Dkv::kMTiles, 2 * Dkv::kPairs> dk_acc;
  dv_acc.zero();
  dk_acc.zero();

  Step step{0, m_begin};
  for (int iteration = 0; iteration < iterations; ++iteration, step = next_step(step)) {
    const int head = step.head;
    const int h = h_first + head;
    const int stage = kStages == 2 ? iteration % 2 : 0;
    const uint32_t stage_bytes = stage * QTile::kBytes;
    const float* lse_stage = stats + stage * 2 * kBlockM;
    const float* delta_stage = lse_stage + kBlockM;

    if constexpr (kStages == 1) {
      if (iteration > 0) {
        __syncthreads();  // every warp is done with the previous tiles
        load_query_tiles(step, 0, *rotation_slot);
        cuda::cp_async_commit();
      }
    }
    cuda::cp_async_wait<0>();
    __syncthreads();  // this step's tiles have landed; the previous step is done everywhere
    if constexpr (kStages == 2) {
      if (iteration + 1 < iterations) {
        load_query_tiles(next_step(step), (iteration + 1) % 2, *rotation_slot);
        cuda::cp_async_commit();
      }
    }

    // The rotation is read only now: thread 0 wrote it before the first barrier above.
    const int m_block = query_block(step.place, *rotation_slot);
    const int m0 = m_block * kBlockM;

    // ---- Phase 1: S = Q K^T and dP = dO V^T on this warp's queries x keys.
    const auto sdp_q_lanes = q_lanes_a.shifted(stage_bytes);
    const auto sdp_do_lanes = q_lanes_a.shifted(stage_bytes + kDoFromQ);
    const auto sdp_v_lanes = k_lanes_b.shifted(kVFromK);
    AccTile<Sdp::kMTiles, 2 * Sdp::kPairs> s;
    AccTile<Sdp::kMTiles, 2 * Sdp::kPairs> dp;
    s.zero();
    dp.zero();
    // A fence every few steps of a product (Config::kLoadWindowSdp / Dkv; load_window).
    const auto sdp_window = [](int step) { load_window<Config::kLoadWindowSdp>(step); };
    const auto dkv_window = [](int step) { load_window<Config::kLoadWindowDkv>(step); };
    warp_gemm<T, Sdp::kMTiles, kWidth / 16, Sdp::kPairs>(s, a_rows(sdp_q_lanes), b_rows(k_lanes_b),
                                                         sdp_window);
    warp_gemm<T, Sdp::kMTiles, kWidth / 16, Sdp::kPairs>(dp, a_rows(sdp_do_lanes),
                                                         b_rows(sdp_v_lanes), sdp_window);

    // P and dS per element. Element (m, n, 2 hh + e): query m0 + sdp_row0 + 16 m + g + 8 hh,
    // key n0 + sdp_col0 + 8 n + 2 t + e.
    // Without a window only the sequences' ends mask (tested so with kLeanMaskTest).
    const int row_last = min(m0 + kBlockM, seq.len_q) - 1;
    const bool needs_mask =
        m0 + kBlockM > seq.len_q ||
        (Config::kLeanMaskTest && !banded
             ? n0 + kBlockN > seq.len_k
             : mask.first_col(row_last) > n0 || mask.last_col(m0) < n0 + kBlockN);
    float alibi_slope = 0.0f;
    if constexpr (kExtras) {
      if (a.alibi_slopes != nullptr) alibi_slope = a.alibi_slopes[b * a.alibi_batch_stride + h];
    }
    const ScoreModifiers modifiers =
        ScoreModifiers::of(a.softmax_scale, kExtras ? a.softcap : 0.0f, alibi_slope);
    const int key0 = n0 + sdp_col0 + 2 * t;  // key of element (n = 0, e = 0)
    // Visible keys key0 + [*first, *last) of a query: its band, empty past the sequence.
    auto visible_keys = [&](int query, int* first, int* last) {
      const bool in_sequence = query < seq.len_q;
      *first = in_sequence ? static_cast<int>(mask.first_col(query)) - key0 : 0;
      *last = in_sequence ? static_cast<int>(mask.last_col(query)) - key0 : 0;
    };
    // Compiled twice (six times with the extras' softcap modes): blocks off the mask's boundary
    // skip the per-element test entirely.
    auto probabilities_and_gradients = [&](auto masked, auto softcap) {
      constexpr bool kMasked = decltype(masked)::value;
      [[maybe_unused]] constexpr Softcap kSoftcap = decltype(softcap)::value;  // extras only
#pragma unroll
      for (int m = 0; m < Sdp::kMTiles; ++m)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int row = sdp_row0 + 16 * m + g + 8 * hh;
          const int query = m0 + row;
          const float lse = lse_stage[row];
          const float delta = delta_stage[row];
          int first = 0;
          int last = 2 * kBlockN;
          if (kMasked) visible_keys(query, &first, &last);
          // The row's dropout mask first, bit 2 n + e for element (n, e), in one branch: a
          // branch per pair cut the element loop into blocks ptxas could not schedule across.
          uint32_t kept_bits = ~0u;
          if (dropout) {
            // Resolved once a row (live across the loop over query blocks, the key made the
            // kernel spill); the pointer and the scalars are launch parameters.
            const DropoutKey philox_key =
                dropout_key(a.dropout_seed_offset, a.dropout_seed, a.dropout_offset);
            kept_bits = dropout_kept_bits<2 * Sdp::kPairs>(
                philox_key.seed, philox_key.offset, a.keep_threshold,
                static_cast<uint32_t>(b * a.heads_q + h), static_cast<uint32_t>(query),
                static_cast<uint32_t>(key0));
            if constexpr (kDropoutApart) {
              // dP through the mask and its 1 / (1 - p) here, so that the element loop below
              // holds no dropout select.
              apply_keep_mask(dp, m, hh, kept_bits, keep_scale);
            }
          }
          const float distance = alibi_row_distance(query, diagonal, key0);
#pragma unroll
          for (int n = 0; n < 2 * Sdp::kPairs; ++n) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int col = 8 * n + e;  // relative to key0
              float& score_slot = s.v[m][n][2 * hh + e];
              float& grad_slot = dp.v[m][n][2 * hh + e];
              float x;  // log2-domain score
              float modifier_grad = 1.0f;
              if constexpr (kExtras) {
                float tanh_value = 0.0f;
                x = modifiers.log2_score<kSoftcap>(score_slot, distance - static_cast<float>(col),
                                                   &tanh_value);
                modifier_grad = modifiers.score_grad<kSoftcap>(tanh_value);
              } else {
                x = score_slot * scale_log2;
              }
              if (kMasked && (col < first || col >= last)) x = -INFINITY;
              const float p = cuda::fast_exp2(x - lse);
              float dp_kept = grad_slot;
              bool kept = true;
              if constexpr (kExtras && !kDropoutApart) {
                kept = element_kept(kept_bits, n, e);
                dp_kept = kept ? dp_kept * keep_scale : 0.0f;
              }
              // dS = P * (dP - delta), dP taken through the dropout mask and its 1 / (1 - p);
              // dV takes P~ (P with the dropped elements zeroed; 1 / (1 - p) at the end).
              grad_slot = p * (dp_kept - delta) * modifier_grad;
              score_slot = kept ? p : 0.0f;
            }
          }
          if (kDropoutApart && dropout) {  // P~ for dV: the dropped elements zeroed
            apply_keep_mask(s, m, hh, kept_bits);
          }
        }
    };
    with_softcap_mode(modifiers, [&](auto softcap) {
      if (needs_mask) {
        probabilities_and_gradients(std::true_type{}, softcap);
      } else {
        probabilities_and_gradients(std::false_type{}, softcap);
      }
    });
    cuda::store_to_tile<ScoreTile, T>(p_tile, s, sdp_row0, sdp_col0 / 8);
    cuda::store_to_tile<ScoreTile, T>(ds_tile, dp, sdp_row0, sdp_col0 / 8);
    __syncthreads();  // P and dS complete in shared memory

    // ---- Phases 2 and 3: dV += P~^T dO and dK += dS^T Q on this warp's keys x head dim;
    // dQ = dS K on this warp's queries x head dim, added to the workspace.
    const auto ds_lanes_at = p_lanes_at.shifted(kDsFromP);
    const auto dkv_q_lanes = q_lanes_bt.shifted(stage_bytes);
    const auto dkv_do_lanes = q_lanes_bt.shifted(stage_bytes + kDoFromQ);
    constexpr int kDkvSteps = (kBlockM / 16) * Dkv::kPairs;  // warp_gemm steps of dV (and dK)
    using DqTile = AccTile<Dq::kMTiles, 2 * Dq::kPairs>;
    // Deterministic: key blocks add to this query block one at a time, highest first. The
    // semaphore counts warps done: a warp waits until every warp of the key blocks before
    // its own has added (warps own disjoint dQ elements, so each element's adds come in
    // key-block order), and counts itself as soon as its own adds are out, without waiting
    // for the block's next barrier.
    int* semaphore = nullptr;
    auto wait_turn = [&] {
      if (args.semaphores != nullptr) {
        // The key blocks that add to this query block before this one (worked out by every
        // lane: inside the lane-0 branch below it made ptxas spill 24 B more at d128).
        int blocks_before;
        if (const int spacing = rotation_spacing(); spacing > 0) {
          // Rotated: those whose walks reach it earlier. Walk n' starts at n' * spacing
          // (relative to m_begin = 0): the ones started in (rotation, m_block], cyclically.
          const int key_blocks = (seq.len_k + kBlockN - 1) / kBlockN;
          const int last_started = min(m_block / spacing, key_blocks - 1);
          blocks_before = m_block >= *rotation_slot ? last_started - n_block
                                                    : key_blocks - n_block + last_started;
        } else {
          // Highest key block first: those above this one that see the query block.
          int first, last;
          key_block_range<kBlockM, kBlockN>(mask, m_block, &first, &last);
          blocks_before = last - 1 - n_block;
        }
        semaphore = args.semaphores + (int64_t{b} * a.heads_q + h) * args.m_blocks + m_block;
        if (lane == 0) {
          const int warps_before = blocks_before * Config::kWarps;
          while (cuda::load_acquire(semaphore) < warps_before) {
          }
        }
        __syncwarp();
      }
    };
    auto release_turn = [&] {
      if (semaphore != nullptr) {
        __syncwarp();  // the warp's adds, then the release that publishes them
        if (lane == 0) cuda::add_release(semaphore, 1);
      }
    };
    // This warp's fragments of the query tile in the workspace, from this lane's first four
    // values (worked out only once dQ is in registers: kept live across dV and dK it made
    // ptxas spill). The workspace's row stride is the tile width (backend.cpp lays it out so).
    auto dq_workspace = [&] {
      return args.dq_accum + (slot_first + head * args.rows_total + m0) * kWidth +
             warp * (Dq::kRows * Dq::kCols) + 4 * lane;
    };
    // dQ = dS K, then (deterministic) this warp's turn: where in the workspace to add it.
    auto dq_product = [&](DqTile& dq) {
      dq.zero();
      warp_gemm<T, Dq::kMTiles, kBlockN / 16, Dq::kPairs>(dq, a_rows(ds_lanes_a),
                                                          b_columns(k_lanes_bt), dkv_window);
      wait_turn();
      return dq_workspace();
    };
    // dQ's add number i (of kDqAdds): the four values of accumulator block (m, n), unmasked
    // (rows past the sequence go to the workspace's gap after it).
    constexpr int kDqAdds = Dq::kMTiles * 2 * Dq::kPairs;
    auto add_dq = [&](const DqTile& dq, float* dq_base, int i) {
      cuda::red_add_f32x4(dq_base + 32 * 4 * i,  // 32 lanes x 4 values a block
                          dq.v[i / (2 * Dq::kPairs)][i % (2 * Dq::kPairs)]);
    };
    if constexpr (Config::kSpreadDqAdds) {
      // dQ first, its adds spread among the steps of dV (at most one per step): issued in one
      // burst at the end of the step they queued behind each other, and each next address
      // waited for the previous add to read its registers (session 5's profile: ~9% of the
      // stall samples).
      DqTile dq;
      float* const dq_base = dq_product(dq);
      // Over the steps of dV: step k's adds are [k, k + 1) * kDqAdds / kDkvSteps.
      warp_gemm<T, Dkv::kMTiles, kBlockM / 16, Dkv::kPairs>(
          dv_acc, a_columns(p_lanes_at), b_columns(dkv_do_lanes), [&](int step) {
#pragma unroll
            for (int i = step * kDqAdds / kDkvSteps; i < (step + 1) * kDqAdds / kDkvSteps; ++i) {
              add_dq(dq, dq_base, i);
            }
            dkv_window(step);
          });
      warp_gemm<T, Dkv::kMTiles, kBlockM / 16, Dkv::kPairs>(dk_acc, a_columns(ds_lanes_at),
                                                            b_columns(dkv_q_lanes), dkv_window);
      release_turn();
    } else {
      warp_gemm<T, Dkv::kMTiles, kBlockM / 16, Dkv::kPairs>(dv_acc, a_columns(p_lanes_at),
                                                            b_columns(dkv_do_lanes));
      warp_gemm<T, Dkv::kMTiles, kBlockM / 16, Dkv::kPairs>(dk_acc, a_columns(ds_lanes_at),
                                                            b_columns(dkv_q_lanes));
      DqTile dq;
      float* const dq_base = dq_product(dq);
#pragma unroll
      for (int i = 0; i < kDqAdds; ++i) add_dq(dq, dq_base, i);
      release_turn();
    }
  }

  // Epilogue: scale, stage dK / dV through the K / V tiles, store coalesced. Keys that no
  // query sees (and rows past seqused_k) get zeros.
  const float dk_scale = kExtras ? 1.0f : a.softmax_scale;
  cuda::cp_async_wait<0>();
  __syncthreads();
  cuda::store_to_tile<KvTile, T>(k_tile, dk_acc, dkv_row0, dkv_col0 / 8, dk_scale);
  cuda::store_to_tile<KvTile, T>(v_tile, dv_acc, dkv_row0, dkv_col0 / 8, keep_scale);
  __syncthreads();
  const int64_t k_row_base = varlen ? seq.k_row0 : 0;
  T* dk = static_cast<T*>(args.dk) + (varlen ? 0 : b * args.dk_batch_stride) +
          (k_row_base + n0) * args.dk_row_stride + h_kv * args.dk_head_stride;
  T* dv = static_cast<T*>(args.dv) + (varlen ? 0 : b * args.dv_batch_stride) +
          (k_row_base + n0) * args.dv_row_stride + h_kv * args.dv_head_stride;
  cuda::store_tile<kBlockN, kWidth, kThreads>(
      k_tile,
      GlobalRows<T>{dk, args.dk_row_stride, seq.len_k_rows - n0, a.head_dim, args.vectorized_dk});
  cuda::store_tile<kBlockN, kWidth, kThreads>(
      v_tile,
      GlobalRows<T>{dv, args.dv_row_stride, seq.len_k_rows - n0, a.head_dim_v, args.vectorized_dv});
}

template <DType kDType, int kWidth, bool kExtras, bool kRoomy>
Status launch_backward_config(const BackwardKernelArgs& args, cudaStream_t stream) {
  using Config = BackwardConfig<kWidth, kRoomy, kExtras>;
  using T = typename ElementOf<kDType>::type;
  const ForwardKernelArgs& a = args.attention;
  const dim3 grid((a.seqlen_k + Config::kBlockN - 1) / Config::kBlockN, a.batch, a.heads_kv);
  BackwardKernelArgs launched = args;
  launched.dq_layout = Config::kDqLayout;
  if (FLASHATTN_SM80_CLEAR_IN_PREPARE) {  // the pre-pass clears whole dQ tiles: it needs the layout
    if (Status status = launch_backward_prepare(kDType, launched, stream); !status.ok()) {
      return status;
    }
  }
  // Without keys dQ is zero: the post-pass alone (any layout of zeros reads as zeros).
  if (grid.x == 0 || grid.y == 0 || grid.z == 0)
    return launch_backward_finish(kDType, launched, stream);
  launched.rotate_dq_order = false;
  if (Config::kRotateWalks && args.semaphores != nullptr && a.window_left < 0 &&
      a.window_right < 0) {
    // Every key block of a sequence must be resident at once (one block per SM), else the
    // walks could wait for blocks that cannot start. Half the SMs, because where a sequence
    // fills the GPU on its own (d64 s16k: 128 key blocks) rotated walks measured 3.4% slower
    // (every block on a different Q / dO tile instead of all close behind each other).
    int device = 0;
    int sms = 0;
    if (cudaGetDevice(&device) == cudaSuccess &&
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) == cudaSuccess) {
      launched.rotate_dq_order = 2 * static_cast<int>(grid.x) <= sms;
    }
  }
  if (Status status = launch_with_shared_memory<&backward_kernel<T, kWidth, kExtras, kRoomy>>(
          grid, Config::kThreads, Config::kSmemBytes, stream, launched, "cuda backward",
          /*after_previous=*/true);
      !status.ok()) {
    return status;
  }
  return launch_backward_finish(kDType, launched, stream);
}

// The roomy configuration where the device has the shared memory for it, else the other.
template <DType kDType, int kWidth, bool kExtras>
Status launch_backward_main(const BackwardKernelArgs& args, cudaStream_t stream) {
  int budget = 0;
  if (Status status = shared_memory_budget(&budget); !status.ok()) return status;
  if (BackwardConfig<kWidth, true, kExtras>::kSmemBytes <= budget) {
    return launch_backward_config<kDType, kWidth, kExtras, true>(args, stream);
  }
  if (Status status = check_shared_memory(BackwardConfig<kWidth, false, kExtras>::kSmemBytes,
                                          budget, kWidth, "cuda backward");
      !status.ok()) {
    return status;
  }
  return launch_backward_config<kDType, kWidth, kExtras, false>(args, stream);
}

}  // namespace flashattn::cuda_sm80
