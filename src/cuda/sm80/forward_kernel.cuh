// FlashAttention-2 forward on mma.sync (sm80 and newer): one Q tile per thread block, a loop
// over K/V tiles with the online softmax in registers, warps split along the query rows.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "common/philox.h"
#include "common/score_mods.h"
#include "cuda/common/ptx.cuh"
#include "cuda/common/register_tile.cuh"
#include "cuda/common/smem_tile.cuh"
#include "cuda/sm80/dropout_bits.cuh"
#include "cuda/sm80/element_type.cuh"
#include "cuda/sm80/forward_args.h"
#include "cuda/sm80/score_modifiers.cuh"
#include "cuda/sm80/sequence_view.cuh"
#include "cuda/sm80/shared_memory.cuh"
#include "cuda/sm80/warp_gemm.cuh"

namespace flashattn::cuda_sm80 {

using cuda::AccTile;
using cuda::GlobalRows;
using cuda::OnlineSoftmax;
using cuda::SmemTile;

// Tile shape and schedule per head-dim width: kBlockM query rows per block, kBlockN keys per
// iteration, kWarps warps along the rows. kPrefetch loads mma fragments one step ahead;
// kEarlyKLoad issues the next K tile before the softmax rather than before P V, which keeps
// the copy's registers live across the softmax: it pays only where a warp owns one m16 tile
// (with two, the d128 kernel spilled and lost 8%). Measured variants are in bench/NOTES.md;
// FLASHATTN_SM80_TUNE_* (a build flag) overrides one width's roomy configurations for such runs
// (bench/gpu.sh tune).
// kRoomy = false is the compact configuration, 64 query rows and 4 warps, at d192 and d256 (at
// the narrower widths it equals the roomy one): for devices with less shared memory (sm86 /
// sm89: 99 KB; FA2 too takes 64 rows and 4 warps there at d256, 96 KB), for short lengths
// (launch_forward), and for the d192 extras kernel wherever two of its blocks fit on an SM
// (kCompactFirst).
// kKvStages = 2 keeps two K/V buffers: the next block's K and V are copied during the whole of
// this block's math, and one barrier a step suffices (one buffer: the V copy is issued just
// before S = Q K^T and waited for before the softmax, the next K after it, two barriers a
// step). Taken where it pays (kDoubleBufferPays) and the device's shared memory per SM holds
// kBlocksPerSm such blocks (sm90).
// kPairSplit: warps work in pairs on 32 query rows; for S = Q K^T each warp of a pair takes
// half of the keys, for O += P V half of the head dim, the pair exchanging its row maxima and
// its halves of P through shared memory (two pair barriers a step). Its warps own two m16
// tiles, so the next block's copies go after the softmax (at the top: 124 B of spills). One
// warp on 16 rows over all keys and all of d reads its K and V fragments for 16 rows only: at
// d256 that bound the kernel on shared-memory bandwidth (ncu on the H200: L1 throughput 77%,
// FA2's 80%). A pair reads ~28% less per mma (S: 256 B instead of 320, P V: 128 + P's 32
// instead of 256).
// d192 and d256 without extras only: their 16-row output tiles fill most of a warp's registers,
// so rows per warp cannot grow otherwise. At d192 on the H200 (bench/NOTES.md, session 20), bf16,
// same-process A/B of the 128-row pair-split kernel against the 64-row compact tile: +4.0 /
// +8.0 / +9.6% at s1k / 4k / 16k, -0.2% at s512; causal -11.6 / -5.2% at s512 / 1k, +4.4 /
// +8.9% at 4k / 16k (session 17, before the mbarriers and the lazy rescale: -3 to -6.8%): so
// d192 takes it past the lengths where d256 takes its compact tile (launch_forward). The compact
// d192 tile with pairs lost 1-6% to the plain one there, so only d256 has a compact pair tile.
// FLASHATTN_SM80_PAIR_SPLIT=0 builds without it (A/B runs); FLASHATTN_SM80_PAIR_SPLIT_MIN_WIDTH=256
// keeps d192 on one warp per 16 rows (A/B runs).
#ifndef FLASHATTN_SM80_PAIR_SPLIT
#define FLASHATTN_SM80_PAIR_SPLIT 1
#endif
#ifndef FLASHATTN_SM80_PAIR_SPLIT_MIN_WIDTH
#define FLASHATTN_SM80_PAIR_SPLIT_MIN_WIDTH 192
#endif
// The longest seqlen_q and seqlen_k at which a banded mask (DENSE: no mask; at d256 the compact
// pair tile only) takes the compact tile at d192 / d256 (launch_forward); COMPACT_PAIRS=1: that
// tile with pair-split warps where it fits twice per SM. Session 7 set 4096 and 0; by session 19
// the 128-row d256 kernel had gained (mbarriers, lazy rescale), and against the compact pair tile
// it measured, bf16 on the H200 (bench/NOTES.md), causal: -9.6% at s512, -2.4% at s1k, +3.4% at
// s2k, +8.3% at s4k, so 1024; without a mask, with the pair tile's load window: -1.9% at s512, so
// 512.
#ifndef FLASHATTN_SM80_BANDED_COMPACT_MAX
#define FLASHATTN_SM80_BANDED_COMPACT_MAX 1024
#endif
#ifndef FLASHATTN_SM80_DENSE_COMPACT_MAX
#define FLASHATTN_SM80_DENSE_COMPACT_MAX 512
#endif
#ifndef FLASHATTN_SM80_COMPACT_PAIRS
#define FLASHATTN_SM80_COMPACT_PAIRS 1
#endif
// The O store's whole-tile path with stepped addresses (ForwardConfig::kSteppedStore); a build
// flag for A/B runs.
#ifndef FLASHATTN_SM80_FWD_STEPPED_STORE
#define FLASHATTN_SM80_FWD_STEPPED_STORE 1
#endif
// The loop-top barrier of the two-buffer kernels as per-buffer mbarriers
// (ForwardConfig::kAsyncStages): 0 none, 1 where measured to pay (the pair-split kernels, d192 /
// d256; d96 without extras), 2 every two-buffer kernel that copies the next block after the
// softmax. A build flag for A/B runs.
#ifndef FLASHATTN_SM80_FWD_ASYNC_STAGES
#define FLASHATTN_SM80_FWD_ASYNC_STAGES 1
#endif
#ifndef FLASHATTN_SM80_FWD_EXTRAS_BLOCK_N
#define FLASHATTN_SM80_FWD_EXTRAS_BLOCK_N 32
#endif
// kCompactPairs: the compact tile with pair-split warps (104.5 KB at d256: more than sm86's 99 KB,
// so a configuration of its own beside the plain compact one).
template <int kWidth, bool kExtras, bool kRoomy = true, int kKvStages = 1,
          bool kCompactPairs = false>
struct ForwardConfig {
  static constexpr bool kHasCompact = kWidth >= 192;
#if defined(FLASHATTN_SM80_TUNE_WIDTH)
  static constexpr bool kWidthTuned = kWidth == FLASHATTN_SM80_TUNE_WIDTH;
  static constexpr bool kTuned = kWidthTuned && kRoomy;
#define FLASHATTN_SM80_TUNED(name, otherwise) (kTuned ? FLASHATTN_SM80_TUNE_##name : (otherwise))
#else
  static constexpr bool kWidthTuned = false;
#define FLASHATTN_SM80_TUNED(name, otherwise) (otherwise)
#endif
  // kCompactFirst: the d192 extras kernel takes the compact tile (64 rows, 4 warps, one K/V
  // buffer, 72 KB) wherever two of its blocks fit on an SM (sm80, sm90), at every length: with
  // softcap 30 on the H200 (bench/NOTES.md, session 20), bf16, same-process A/B against the
  // 128-row kernel of 8 warps, +14 / +22% at s512 (causal), +15 / +18% at s4k; with dropout 0.1
  // +14-19% at s2k..16k. (Without extras that tile won +1.6-2.3%, causal +2-12.5%, before the
  // 128-row kernel took pair-split warps.)
  // A tune build of d192 times the roomy configuration it sets, so it keeps the roomy one.
  static constexpr bool kCompactFirst = kWidth == 192 && kExtras && !kWidthTuned;
  static constexpr bool kCompact = !kRoomy && kHasCompact;
  static constexpr int kBlockM = FLASHATTN_SM80_TUNED(M, kCompact ? 64 : 128);
  // 128 keys a step pay for d <= 64 (d64: +6% at 16k) but spill the extras' Philox state.
  // The d128 extras kernel takes FLASHATTN_SM80_FWD_EXTRAS_BLOCK_N (32) keys a step, as FA2
  // does for its dropout kernels: with 64 it spilled 396 B (ptxas sm90, score_modifiers.cuh),
  // with 32 nothing. Measured on the H200 (bench/NOTES.md, session 15), bf16, same-process A/B
  // of 32 against 64 keys: d128 softcap +4-11%, dropout -2 to +36% (causal s512); at d96 and d256
  // 64 keys won (softcap +4-14% and 0 to +13%; they spill 128 / 36 B), so they keep 64.
  // FLASHATTN_SM80_FWD_EXTRAS_BLOCK_N=64: 64 at d128 too (A/B runs).
  static constexpr bool kExtrasNarrow = kExtras && kWidth == 128;
  static constexpr int kBlockN = FLASHATTN_SM80_TUNED(
      N, kWidth <= 64 && !kExtras ? 128 : (kExtrasNarrow ? FLASHATTN_SM80_FWD_EXTRAS_BLOCK_N : 64));
  static constexpr int kWarps = FLASHATTN_SM80_TUNED(WARPS, kWidth <= 128 || kCompact ? 4 : 8);
  static constexpr bool kPairSplit =
      FLASHATTN_SM80_PAIR_SPLIT && kWidth >= FLASHATTN_SM80_PAIR_SPLIT_MIN_WIDTH && !kExtras &&
      (!kCompact || (kCompactPairs && kWidth == 256)) && kWarps % 2 == 0;
  static constexpr bool kCompactPairTile = kCompact && kPairSplit;      // d256 at short lengths
  static constexpr int kRowGroups = kPairSplit ? kWarps / 2 : kWarps;   // warps (pairs) on rows
  static constexpr int kMTiles = kBlockM / (16 * kRowGroups);           // m16 tiles per warp
  static constexpr int kWarpKeys = kPairSplit ? kBlockN / 2 : kBlockN;  // a warp's keys of S
  static constexpr int kWarpDims = kPairSplit ? kWidth / 2 : kWidth;    // a warp's columns of O
  static constexpr bool kPrefetch = FLASHATTN_SM80_TUNED(PREFETCH, true);
#ifdef FLASHATTN_SM80_FWD_EARLY_K  // 0 / 1 forces it off / on everywhere but a tuned width
  static constexpr bool kEarlyKLoad = FLASHATTN_SM80_TUNED(EARLYK, FLASHATTN_SM80_FWD_EARLY_K != 0);
#else
  static constexpr bool kEarlyKLoad = FLASHATTN_SM80_TUNED(EARLYK, kMTiles == 1);
#endif
#undef FLASHATTN_SM80_TUNED
  // Load windows (load_window): a __syncwarp every kLoadWindow mma steps of S = Q K^T and
  // O += P V. Measured on the H200 (bench/NOTES.md, session 14), bf16, same-process A/B against
  // none: d128 window 2 +0-2.4% (two runs; window 1 -0.6 to +2.5%); d96 window 1 +1.8-5.9%
  // (window 2 +1-5.2%); d256 (pair-split) windows 1 and 2 -0.3 to -2.8%; d64 windows 1 / 2
  // -0.9 to +2% with 8-16 B of spills: not taken. Session 19: the d256 compact pair tile
  // (causal s <= 1k) window 2 +2.2 / +3.4% at causal s512 / 1k, window 1 +0.8 / +1.8%; the
  // 128-row d256 kernel window 2 +0.0 / +0.1% at s512 / 1k (so it keeps none). The extras
  // kernels and the plain compact d256 one (sm86 / sm89) keep none (not measured).
  // FLASHATTN_SM80_FWD_LOAD_WINDOW = n forces n everywhere (A/B runs).
#ifdef FLASHATTN_SM80_FWD_LOAD_WINDOW
  static constexpr int kLoadWindow = FLASHATTN_SM80_FWD_LOAD_WINDOW;
#else
  static constexpr int kLoadWindow = kExtras            ? 0
                                     : kWidth == 128    ? 2
                                     : kWidth == 96     ? 1
                                     : kCompactPairTile ? 2
                                                        : 0;
#endif
  // Lazy rescaling (cuda::OnlineSoftmax). Measured on the H200 (bench/NOTES.md, session 17),
  // bf16, same-process A/B at s512 / 4k / 16k: d128 +0-1.8%, d64 -0.2 to -2%, d256 (pair-split)
  // -4.7 to +0.4%. Session 18, with the d256 kernel on mbarriers (kAsyncStages): d256 +1.2 /
  // +1.7 / +3.1% at s512 / 1k / 16k, causal +0.9 / -0.3 / +2.9% (the compact pair tile below
  // 4k). Session 20: d96 (on two buffers with the mbarriers since then) +1.6 / +2.2 / +3.7 /
  // +4.0% at s512 / 1k / 4k / 16k, causal +0.8 to +4.8% (on one buffer: -0.3 to +1.9%); the
  // 64-row d192 tile -0.6 to +0.9%. So d96, d128 and the pair-split kernels (d256; d192 was
  // measured with it), without extras (the extras kernels and the plain compact tiles not
  // measured).
  // FLASHATTN_SM80_FWD_LAZY_RESCALE = 0 / 1 forces it off / on everywhere (A/B runs).
#ifdef FLASHATTN_SM80_FWD_LAZY_RESCALE
  static constexpr bool kLazyRescale = FLASHATTN_SM80_FWD_LAZY_RESCALE != 0;
#else
  static constexpr bool kLazyRescale = !kExtras && (kWidth == 96 || kWidth == 128 || kPairSplit);
#endif
  static constexpr int kThreads = kWarps * 32;
  // kFirstVEarly: the first step's V is copied right after Q and K, as a second copy group
  // that the first step waits for only before its softmax, instead of being issued at the top
  // of that step: it gets the wait for Q and K besides S = Q K^T to land in. Measured on the
  // H200 (bench/NOTES.md, session 18), bf16, same-process A/B at s512 / 1k / 4k / 16k: d128
  // +1.6-4.4% at every point, long lengths too (so more than the first step: the loop came
  // out scheduled differently), d256 (pair-split) -0.5 to -2.7%. Session 19, d256 with the
  // lazy rescale: the 128-row kernel -0.6 to +0.6%, the compact pair tile (one buffer, like
  // d128's) causal -0.5 / +1.4 / +1.9 / +2.2% at s512 / 1k / 2k / 4k. So d128 and the compact
  // pair tile, without extras (the extras kernels not measured).
  // FLASHATTN_SM80_FWD_FIRST_V_EARLY = 0 / 1 forces it off / on everywhere (A/B runs).
#ifdef FLASHATTN_SM80_FWD_FIRST_V_EARLY
  static constexpr bool kFirstVEarly = FLASHATTN_SM80_FWD_FIRST_V_EARLY != 0;
#else
  static constexpr bool kFirstVEarly = !kExtras && (kWidth == 128 || kCompactPairTile);
#endif
  // With two K/V buffers, the next block's copy is issued at the top of the step (a whole step
  // to land) where a warp owns one m16 tile; with two (d <= 128) the copy's registers then
  // overlap the score tile's and ptxas spilled 56-88 B, so it goes after the softmax.
  // FLASHATTN_SM80_FWD_COPY_NEXT_AT_TOP = 0 / 1 forces it (A/B runs: with 0 and
  // FLASHATTN_SM80_FWD_ASYNC_STAGES=2 the one-m16-tile kernels, d192, take the async stages).
#ifdef FLASHATTN_SM80_FWD_COPY_NEXT_AT_TOP
  static constexpr bool kCopyNextAtTop = FLASHATTN_SM80_FWD_COPY_NEXT_AT_TOP != 0;
#else
  static constexpr bool kCopyNextAtTop = kMTiles == 1;
#endif
  // kAsyncStages: with two K/V buffers and the next block's copy issued after the softmax, the
  // __syncthreads at the top of every step but the first gives way to two mbarriers per
  // buffer: `full` completes when every thread's copies into it have landed (cp.async arrives
  // for the thread), `empty` when every thread is done reading it. A warp then waits at the top
  // only for the copies, and for the slowest warp's previous step only where it is about to
  // overwrite that step's buffer, after its own S = Q K^T and softmax, instead of all eight
  // warps of the one d256 block meeting at a barrier every step (ncu, bench/NOTES.md session
  // 11: barrier stalls 0.48 per issue against FA2's 0.15). Measured on the H200 (session 18),
  // bf16, same-process A/B: d256 +2.3 / +3.9 / +7.3 / +7.6% at s512 / 1k / 4k / 16k (the
  // causal ones below 4k take the one-buffer compact tile: unchanged); d64 0 to -2.5%.
  // Session 20, d96 without extras (two buffers since then, kDoubleBufferPaid): +2.3 / +3.1 /
  // +3.5 / +3.3% at s512 / 1k / 4k / 16k against one buffer, causal +0.3 to +0.8%; d128 with two
  // buffers and the mbarriers: causal +0.3 to +1.4%, without a mask -0.1 to -1.3% (not taken).
  // kMbarriersPay: the kernels where they were measured to pay, which take two buffers for them.
  static constexpr bool kMbarriersPay = kPairSplit || (kWidth == 96 && !kExtras);
  static constexpr bool kAsyncStages = kKvStages == 2 && !kCopyNextAtTop &&
                                       (FLASHATTN_SM80_FWD_ASYNC_STAGES == 2 ||
                                        (FLASHATTN_SM80_FWD_ASYNC_STAGES == 1 && kMbarriersPay));
  // Where two buffers paid on the H100 (bench/NOTES.md, forward v8): d <= 64 (+5-7% at 4k-16k)
  // and one m16 tile per warp (d192 / d256: even, one barrier less), and pair-split warps (d256,
  // kept from the one-warp-per-16-rows kernel; one buffer not measured for them); at d96 / d128
  // one buffer measured 2-3% faster in two runs (both before the async stages). Session 20 on
  // the H200: d96 without extras on two buffers with the mbarriers +0.3 to +3.5% (kAsyncStages),
  // d128 mixed (not taken), the roomy d192 kernel with one buffer -3 to -5%.
  // FLASHATTN_SM80_FWD_DOUBLE_BUFFER = 1 adds two buffers for every kernel without extras where
  // they fit (A/B runs: d128 with FLASHATTN_SM80_FWD_ASYNC_STAGES=2), = 0 keeps one everywhere.
  static constexpr bool kDoubleBufferPaid = kWidth <= 64 || kMTiles == 1 || kMbarriersPay;
#ifdef FLASHATTN_SM80_FWD_DOUBLE_BUFFER
  static constexpr bool kDoubleBufferPays =
      FLASHATTN_SM80_FWD_DOUBLE_BUFFER != 0 && (kDoubleBufferPaid || !kExtras);
#else
  static constexpr bool kDoubleBufferPays = kDoubleBufferPaid;
#endif
  // The O store's whole-tile path (cuda::store_tile): fewer instructions per tile. Measured on
  // the H200 (bench/NOTES.md, session 11), bf16: d128 +0.6-0.9% without a mask (s512-16k),
  // -1.0 to +0.1% causal; d256 (pair-split) -2 to -3.5% at every length, with no spills
  // either way: the main loop came out scheduled differently. The extras kernels and the compact
  // pair-split one spilled 4-44 B more with it (ptxas, sm90). So d <= 128 without extras.
  static constexpr bool kSteppedStore =
      FLASHATTN_SM80_FWD_STEPPED_STORE && !kExtras && kWidth <= 128;
  // Blocks per SM that the registers allow (255 per thread): two of 4 warps, one of 8.
  static constexpr int kBlocksPerSm = kWarps == 4 ? 2 : 1;

  using QTile = SmemTile<kBlockM, kWidth>;
  using KvTile = SmemTile<kBlockN, kWidth>;
  using PTile = SmemTile<kBlockM, kBlockN>;  // a pair's probabilities, bf16 / fp16
  // A pair's exchange: per row and warp of the pair, a row max (each step), then a row sum.
  static constexpr int kExchangeBytes = kBlockM * 2 * 4;
  static constexpr int kBarrierBytes = kAsyncStages ? 4 * 8 : 0;  // full[2], empty[2]
  static constexpr int kSmemBytes = QTile::kBytes + 2 * kKvStages * KvTile::kBytes +
                                    (kPairSplit ? PTile::kBytes + kExchangeBytes : 0) +
                                    kBarrierBytes;
  static_assert(kKvStages == 1 || kKvStages == 2, "one or two K/V buffers");

  static_assert(kBlockM % (16 * kWarps) == 0, "each warp owns whole m16 tiles");
  static_assert(kBlockN % 16 == 0 && kWidth % 16 == 0, "k16 steps");
};

template <typename T, int kWidth, bool kExtras, bool kRoomy, int kKvStages, bool kCompactPairs>
__global__ void __launch_bounds__(
    ForwardConfig<kWidth, kExtras, kRoomy, kKvStages, kCompactPairs>::kThreads, 1)
    forward_kernel(const __grid_constant__ ForwardKernelArgs args) {
  using Config = ForwardConfig<kWidth, kExtras, kRoomy, kKvStages, kCompactPairs>;
  constexpr int kBlockM = Config::kBlockM;
  constexpr int kBlockN = Config::kBlockN;
  constexpr int kThreads = Config::kThreads;
  constexpr int kMTiles = Config::kMTiles;
  constexpr bool kPairSplit = Config::kPairSplit;
  constexpr int kNTiles = Config::kWarpKeys / 8;  // n8 score tiles per warp
  constexpr int kDTiles = Config::kWarpDims / 8;  // n8 output tiles per warp
  using QTile = typename Config::QTile;
  using KvTile = typename Config::KvTile;

  extern __shared__ __align__(128) unsigned char smem[];
  // Q, then per K/V stage its K tile and V tile.
  constexpr uint32_t kStageBytes = 2 * KvTile::kBytes;
  const uint32_t q_tile = cuda::smem_address(smem);
  const uint32_t k_tile = q_tile + QTile::kBytes;  // stage 0
  const uint32_t v_tile = k_tile + KvTile::kBytes;
  const uint32_t p_tile = q_tile + QTile::kBytes + kKvStages * kStageBytes;  // kPairSplit only
  const uint32_t exchange = p_tile + Config::PTile::kBytes;
  // kAsyncStages: the mbarriers of K/V buffer 0 and 1, last in shared memory.
  const uint32_t full_barrier = q_tile + Config::kSmemBytes - Config::kBarrierBytes;
  const uint32_t empty_barrier = full_barrier + 16;
  if constexpr (Config::kAsyncStages) {
    if (threadIdx.x == 0) {
      for (uint32_t stage = 0; stage < 2; ++stage) {
        cuda::mbarrier_init(full_barrier + 8 * stage, kThreads);
        cuda::mbarrier_init(empty_barrier + 8 * stage, kThreads);
      }
    }  // seen by every thread after the first step's __syncthreads, before any arrival
  }

  // With a causal / local mask the last query blocks see the most keys: start them first so
  // that the short ones fill the tail of the grid.
  const bool banded = args.window_left >= 0 || args.window_right >= 0;
  const int m_block = banded ? static_cast<int>(gridDim.x - 1 - blockIdx.x) : blockIdx.x;
  const int b = blockIdx.y;
  const int h = blockIdx.z;
  const SequenceView seq = sequence_view(args, b, h);
  const int m0 = m_block * kBlockM;
  if (m0 >= seq.len_q) return;

  const MaskSpec mask{seq.len_q, seq.len_k, args.window_left, args.window_right};
  const int row_last = min(m0 + kBlockM, seq.len_q) - 1;
  // Key blocks that some row of this tile can see; blocks outside are skipped entirely.
  const int64_t col_begin = mask.first_col(m0);
  const int64_t col_end = mask.last_col(row_last);
  const int n_block_min = static_cast<int>(col_begin / kBlockN);
  const int n_block_max =
      col_end > col_begin ? static_cast<int>((col_end + kBlockN - 1) / kBlockN) : n_block_min;

  const T* q_base = static_cast<const T*>(args.q) + seq.q_offset;
  const T* k_base = static_cast<const T*>(args.k) + seq.k_offset;
  const T* v_base = static_cast<const T*>(args.v) + seq.v_offset;
  const int qk_cols = args.head_dim;
  auto k_rows = [&](int n_block) {
    const int n0 = n_block * kBlockN;
    return GlobalRows<const T>{k_base + n0 * args.k_row_stride, args.k_row_stride, seq.len_k - n0,
                               qk_cols, args.vectorized_k};
  };
  auto v_rows = [&](int n_block) {
    const int n0 = n_block * kBlockN;
    return GlobalRows<const T>{v_base + n0 * args.v_row_stride, args.v_row_stride, seq.len_k - n0,
                               args.head_dim_v, args.vectorized_v};
  };

  cuda::load_tile<kBlockM, kWidth, kThreads>(
      q_tile, GlobalRows<const T>{q_base + m0 * args.q_row_stride, args.q_row_stride,
                                  seq.len_q - m0, qk_cols, args.vectorized_q});
  if (n_block_max > n_block_min) {
    cuda::load_tile<kBlockN, kWidth, kThreads>(k_tile, k_rows(n_block_max - 1));
  }
  cuda::cp_async_commit();
  if constexpr (Config::kFirstVEarly) {
    if (n_block_max > n_block_min) {
      cuda::load_tile<kBlockN, kWidth, kThreads>(v_tile, v_rows(n_block_max - 1));
    }
    cuda::cp_async_commit();
  }

  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  // With kPairSplit, warps 2i and 2i + 1 share rows; half 0 / 1 takes the first / second half
  // of each key block for S and of the head dim for O.
  const int half = kPairSplit ? warp % 2 : 0;
  const int warp_row0 = (kPairSplit ? warp / 2 : warp) * kMTiles * 16;  // first tile row
  const int key0 = half * Config::kWarpKeys;  // this warp's first key of a block, for S
  const int g = lane / 4;
  const int t = lane % 4;

  const float multiplier = kExtras ? 1.0f : args.softmax_scale * kLog2e;
  const int64_t diagonal = mask.diagonal();
  float alibi_slope = 0.0f;
  if constexpr (kExtras) {
    if (args.alibi_slopes != nullptr) {
      alibi_slope = args.alibi_slopes[b * args.alibi_batch_stride + h];
    }
  }
  const ScoreModifiers modifiers =
      ScoreModifiers::of(args.softmax_scale, kExtras ? args.softcap : 0.0f, alibi_slope);
  const bool dropout = kExtras && args.dropout_p > 0.0f;
  const uint32_t batch_head = static_cast<uint32_t>(b * args.heads_q + h);

  const auto q_lanes = QTile::lane_addresses(q_tile, warp_row0 + lane % 16, lane / 16);
  // K and V lanes of the current stage: moved to the other stage after each step (moving one
  // set rather than keeping one per stage saves the registers the d128 kernel spilled).
  auto k_lanes = KvTile::lane_addresses(k_tile, key0 + lane % 8 + (lane / 16) * 8, (lane / 8) % 2);
  auto v_lanes = KvTile::lane_addresses(v_tile, lane % 16, lane / 16 + half * kDTiles);
  uint32_t stage_bytes = 0;  // offset of the current stage from stage 0

  AccTile<kMTiles, kDTiles> o;
  o.zero();
  OnlineSoftmax<kMTiles, Config::kLazyRescale> softmax;
  softmax.init();

  // kPairSplit: the pair's own barrier, and one value per row folded with the other warp's
  // through the exchange slots. Each slot is rewritten only after the next pair barrier, by
  // which time the other warp has read it.
  auto pair_sync = [&] { cuda::named_barrier_sync<64>(1 + warp / 2); };
  // fold: the max (take_max) or the sum of the two warps' values.
  auto pair_exchange = [&](float(&values)[kMTiles][2], bool take_max) {
    auto slot = [&](int m, int hh, int which) {
      return exchange + static_cast<uint32_t>(((warp_row0 + m * 16 + g + hh * 8) * 2 + which) * 4);
    };
    if (t == 0) {
#pragma unroll
      for (int m = 0; m < kMTiles; ++m)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) cuda::st_shared_f32(slot(m, hh, half), values[m][hh]);
    }
    pair_sync();
#pragma unroll
    for (int m = 0; m < kMTiles; ++m)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const float other = cuda::ld_shared_f32(slot(m, hh, 1 - half));
        values[m][hh] = take_max ? fmaxf(values[m][hh], other) : values[m][hh] + other;
      }
  };

  for (int n_block = n_block_max - 1; n_block >= n_block_min; --n_block) {
    const int n0 = n_block * kBlockN;
    // The first step runs the one-buffer schedule whatever kKvStages (its V copied during
    // S = Q K^T, not waited for with Q and K before the first product: that wait, a step's
    // worth of copies with nothing to hide them, cost the short sequences ~5%).
    const bool first = n_block == n_block_max - 1;
    // kAsyncStages: this step's buffer, and the parity of the phase that both its barriers
    // (and the other buffer's) complete for this step: buffer 1 is filled for steps 1, 3, 5, ...,
    // buffer 0 (by the barrier) for steps 2, 4, ...; each is released after the step it served.
    const int step = n_block_max - 1 - n_block;
    const uint32_t stage = static_cast<uint32_t>(step) & 1u;
    const uint32_t parity = static_cast<uint32_t>((step - 1) >> 1) & 1u;
    auto load_next_kv = [&] {
      if (n_block > n_block_min) {
        const uint32_t next = kStageBytes - stage_bytes;
        if constexpr (Config::kAsyncStages) {
          // Every thread is done with the other buffer's block, of the previous step.
          if (!first) cuda::mbarrier_wait(empty_barrier + 8 * (1 - stage), parity);
        }
        cuda::load_tile<kBlockN, kWidth, kThreads>(k_tile + next, k_rows(n_block - 1));
        cuda::load_tile<kBlockN, kWidth, kThreads>(v_tile + next, v_rows(n_block - 1));
        cuda::cp_async_commit();
        if constexpr (Config::kAsyncStages) {
          cuda::cp_async_mbarrier_arrive(full_barrier + 8 * (1 - stage));
        }
      }
    };
    if (Config::kAsyncStages && !first) {
      // K(n) and V(n) have landed: every thread's copies, which the buffer's barrier tracks.
      cuda::mbarrier_wait(full_barrier + 8 * stage, parity);
    } else {
      // K(n) has landed (two buffers, after the first step: V(n) too), and every warp is done
      // with the previous step's buffers.
      if (Config::kFirstVEarly && first) {
        cuda::cp_async_wait<1>();  // Q and K; V may still be in flight
      } else {
        cuda::cp_async_wait<0>();
      }
      __syncthreads();
    }
    const bool one_buffer_step = kKvStages == 1 || first;
    if (one_buffer_step && !(Config::kFirstVEarly && first)) {
      cuda::load_tile<kBlockN, kWidth, kThreads>(v_tile, v_rows(n_block));
      cuda::cp_async_commit();
    }
    if constexpr (kKvStages == 2 && Config::kCopyNextAtTop) load_next_kv();

    AccTile<kMTiles, kNTiles> s;
    s.zero();
    gemm_qk<T, kWidth, Config::kPrefetch, Config::kLoadWindow>(s, q_lanes, k_lanes);

    // Score modifiers everywhere (extras), the mask only on blocks that cross a boundary.
    const bool needs_mask =
        n0 + kBlockN > seq.len_k ||
        (args.window_right >= 0 && n0 + kBlockN - 1 > m0 + diagonal + args.window_right) ||
        (args.window_left >= 0 && n0 < row_last + diagonal - args.window_left);
    if constexpr (kExtras) {
      with_softcap_mode(modifiers, [&](auto softcap) {
        constexpr Softcap kSoftcap = decltype(softcap)::value;
#pragma unroll
        for (int m = 0; m < kMTiles; ++m)
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) {
            const float distance = alibi_row_distance(m0 + warp_row0 + m * 16 + g + hh * 8,
                                                      diagonal, n0 + key0 + 2 * t);
#pragma unroll
            for (int n = 0; n < kNTiles; ++n)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                float& score = s.v[m][n][2 * hh + e];
                float tanh_value;
                score = modifiers.log2_score<kSoftcap>(
                    score, distance - static_cast<float>(8 * n + e), &tanh_value);
              }
          }
      });
    }
    if (needs_mask) {
      // Each row sees the key range [first_col, last_col) of the shared MaskSpec.
#pragma unroll
      for (int m = 0; m < kMTiles; ++m)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int row = m0 + warp_row0 + m * 16 + g + hh * 8;
          const int first = static_cast<int>(mask.first_col(row)) - n0 - key0 - 2 * t;
          const int last = static_cast<int>(mask.last_col(row)) - n0 - key0 - 2 * t;
#pragma unroll
          for (int n = 0; n < kNTiles; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int col = n * 8 + e;  // relative to n0 + key0 + 2t
              if (col < first || col >= last) s.v[m][n][2 * hh + e] = -INFINITY;
            }
        }
    }

    if (one_buffer_step) {
      // V(n) has landed (the next block's copy, if issued at the top, may still be in flight),
      // and with one buffer every warp is done reading K(n).
      if (kKvStages == 2 && Config::kCopyNextAtTop && n_block > n_block_min) {
        cuda::cp_async_wait<1>();
      } else {
        cuda::cp_async_wait<0>();
      }
      __syncthreads();
    }
    auto load_next_k = [&] {
      if (kKvStages == 1 && n_block > n_block_min) {
        cuda::load_tile<kBlockN, kWidth, kThreads>(k_tile, k_rows(n_block - 1));
        cuda::cp_async_commit();
      }
    };
    if constexpr (Config::kEarlyKLoad) load_next_k();
    if constexpr (kPairSplit) {
      // The row max over both halves of the block: both warps then scale alike.
      float new_max[kMTiles][2];
      softmax.tile_max(s, new_max);
      pair_exchange(new_max, /*take_max=*/true);
      softmax.apply(s, o, multiplier, new_max);
    } else {
      softmax.update(s, o, multiplier);
    }

    if (dropout) {
      // Resolved once a step (live across the loop over key blocks, the key made the extras
      // kernels spill); the pointer and the scalars are launch parameters.
      const DropoutKey philox_key =
          dropout_key(args.dropout_seed_offset, args.dropout_seed, args.dropout_offset);
#pragma unroll
      for (int m = 0; m < kMTiles; ++m)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int row = m0 + warp_row0 + m * 16 + g + hh * 8;
          const int col0 = n0 + key0 + 2 * t;
          const uint32_t kept_bits = dropout_kept_bits<kNTiles>(
              philox_key.seed, philox_key.offset, args.keep_threshold, batch_head,
              static_cast<uint32_t>(row), static_cast<uint32_t>(col0));
          apply_keep_mask(s, m, hh, kept_bits);
          if (args.dropout_mask != nullptr) {  // the tests' view of the mask
#pragma unroll
            for (int n = 0; n < kNTiles; ++n)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const int col = col0 + n * 8 + e;
                if (row < seq.len_q && col < seq.len_k) {
                  const bool kept = element_kept(kept_bits, n, e);
                  const int64_t index =
                      ((int64_t{batch_head} * args.seqlen_q + row) * args.seqlen_k) + col;
                  args.dropout_mask[index] = kept && mask.visible(row, col) ? 1 : 0;
                }
              }
          }
        }
    }

    uint32_t p[kMTiles][kNTiles / 2][4];
    cuda::to_a_fragments<T>(s, p);
    if constexpr (kPairSplit) {
      // This warp's half of P to the pair's tile, for the other warp's P V.
#pragma unroll
      for (int m = 0; m < kMTiles; ++m)
#pragma unroll
        for (int j = 0; j < kNTiles / 2; ++j)
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const int row = warp_row0 + m * 16 + g + (r % 2) * 8;
            const int chunk = (key0 + 16 * j) / 8 + r / 2;
            cuda::st_shared_b32(p_tile + Config::PTile::offset(row, chunk) + 4 * t, p[m][j][r]);
          }
    }
    if constexpr (!Config::kEarlyKLoad) load_next_k();
    if constexpr (kKvStages == 2 && !Config::kCopyNextAtTop) load_next_kv();
    // V's rows of this warp's keys (kPairSplit: its half of the block; else all of it).
    gemm_pv<T, kWidth, Config::kPrefetch, Config::kLoadWindow>(o, p, v_lanes.shifted(key0 * 128));
    if constexpr (kPairSplit) {
      // The other warp's half of P, then its keys' rows of V.
      pair_sync();
      const int other_key0 = Config::kWarpKeys - key0;
      const auto p_lanes =
          Config::PTile::lane_addresses(p_tile, warp_row0 + lane % 16, lane / 16 + other_key0 / 8);
#pragma unroll
      for (int m = 0; m < kMTiles; ++m)
#pragma unroll
        for (int j = 0; j < kNTiles / 2; ++j) cuda::ldmatrix_x4(p[m][j], p_lanes.at(16 * m, 2 * j));
      gemm_pv<T, kWidth, Config::kPrefetch, Config::kLoadWindow>(o, p,
                                                                 v_lanes.shifted(other_key0 * 128));
    }
    if constexpr (Config::kAsyncStages) {
      // This thread is done reading the buffer. Every thread arrives, after its own reads:
      // with lane 0 arriving for its warp after a __syncwarp, ptxas compiled the __syncwarp to
      // nothing and racecheck reported the other lanes' reads against the next copy into the
      // buffer (bench/NOTES.md, session 18: 1% faster from s4k up, the same at s512).
      cuda::mbarrier_arrive(empty_barrier + 8 * stage);
    }
    if constexpr (kKvStages == 2) {
      const uint32_t to_other = stage_bytes == 0 ? kStageBytes : 0u - kStageBytes;
      stage_bytes += to_other;
      k_lanes = k_lanes.shifted(to_other);
      v_lanes = v_lanes.shifted(to_other);
    }
  }

  // Epilogue: normalise once, write LSE, stage O through this warp's own Q rows in shared
  // memory (no other warp reads them) so that the global stores are 16-byte and coalesced.
  float lse[kMTiles][2];
  const float keep_scale = dropout ? 1.0f / (1.0f - args.dropout_p) : 1.0f;
  if constexpr (kPairSplit) {
    float sums[kMTiles][2];  // each warp's sums cover its half of the keys
    softmax.row_sums(sums);
    pair_exchange(sums, /*take_max=*/false);
    softmax.finish(o, multiplier, keep_scale, lse, sums);
  } else {
    softmax.finish(o, multiplier, keep_scale, lse);
  }
  if (args.lse != nullptr && t == 0 && half == 0) {
    const int64_t lse_base = lse_offset(args, seq, b, h);
#pragma unroll
    for (int m = 0; m < kMTiles; ++m)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int row = m0 + warp_row0 + m * 16 + g + hh * 8;
        if (row < seq.len_q) args.lse[lse_base + row] = lse[m][hh];
      }
  }
  cuda::cp_async_wait<0>();
  __syncthreads();  // with no key block to visit, Q's copies (by every thread) may be in flight
  cuda::store_to_tile<QTile, T>(q_tile, o, warp_row0, half * kDTiles);
  __syncthreads();
  T* out_base = static_cast<T*>(args.out) + seq.out_offset;
  cuda::store_tile<kBlockM, kWidth, kThreads, Config::kSteppedStore>(
      q_tile, GlobalRows<T>{out_base + m0 * args.out_row_stride, args.out_row_stride,
                            seq.len_q - m0, args.head_dim_v, args.vectorized_out});
}

template <DType kDType, int kWidth, bool kExtras, bool kRoomy, int kKvStages = 1,
          bool kCompactPairs = false>
Status launch_forward_config(const ForwardKernelArgs& args, cudaStream_t stream) {
  using Config = ForwardConfig<kWidth, kExtras, kRoomy, kKvStages, kCompactPairs>;
  using T = typename ElementOf<kDType>::type;
  const dim3 grid((args.seqlen_q + Config::kBlockM - 1) / Config::kBlockM, args.batch,
                  args.heads_q);
  return launch_with_shared_memory<
      &forward_kernel<T, kWidth, kExtras, kRoomy, kKvStages, kCompactPairs>>(
      grid, Config::kThreads, Config::kSmemBytes, stream, args, "cuda forward");
}

// Two K/V buffers where they pay and the device's shared memory per SM holds as many such blocks
// as the registers allow (sm90; sm80 too at d <= 64), else the roomy configuration with one
// where a block fits (sm80), else the compact one (sm86 / sm89); at d192 / d256 the compact one
// also for short lengths where two of its blocks fit on an SM (sm90; at d192 sm80 too), and for
// the d192 extras kernel at every length where they do.
template <DType kDType, int kWidth, bool kExtras>
Status launch_forward(const ForwardKernelArgs& args, cudaStream_t stream) {
  using Double = ForwardConfig<kWidth, kExtras, true, 2>;
  using Roomy = ForwardConfig<kWidth, kExtras, true>;
  using Compact = ForwardConfig<kWidth, kExtras, false>;
  using CompactPairs = ForwardConfig<kWidth, kExtras, false, 1, true>;
  int budget = 0;
  int per_sm = 0;
  if (Status status = shared_memory_budget(&budget, &per_sm); !status.ok()) return status;
  auto twice_per_sm = [&](int bytes) {
    return bytes <= budget && 2 * (bytes + kReservedSharedMemoryPerBlock) <= per_sm;
  };
  if constexpr (Compact::kCompactFirst) {  // the d192 extras kernel: every length and mask
    if (twice_per_sm(Compact::kSmemBytes)) {
      return launch_forward_config<kDType, kWidth, kExtras, false>(args, stream);
    }
  }
  if constexpr (Roomy::kHasCompact) {
    // A causal / local mask at short lengths gives short blocks of uneven length: there the
    // compact tile (64 rows, 4 warps), two blocks per SM, hides one block's loads and stores
    // behind the other's math. On the H200 (bench/NOTES.md, session 7), with pair-split warps,
    // it beat the 128-row pair-split kernel at d256 causal s512..4k (+0/+4/+6/+3%; 8k and
    // beyond not measured) and tied it without a mask at s512 / s1k; since session 19 (the
    // 128-row kernel on mbarriers, the pair tile with a load window) only up to causal s1k
    // (BANDED_COMPACT_MAX), and the pair tile without a mask at s512 (+2.0%: DENSE, 512). Only
    // where two such blocks fit on an SM (not on sm80); without room for the pair's P tile
    // (sm86: 99 KB), the plain compact tile, for banded masks only (without one it was not
    // measured against the 128-row kernel; the extras kernels have no pair tile). Both lengths
    // count: every measurement had seqlen_q = seqlen_k, and with many keys a row (a short
    // query chunk against a long cache) the block's loop is long, where the 128-row kernel's
    // two buffers win (causal s4k: +8.3%). d192 (session 20) takes the same lengths, with the
    // plain compact tile and with or without a mask: against its 128-row pair-split kernel it
    // won +11.6 / +5.2% at causal s512 / 1k and tied at s512 (+0.2%), and lost at s1k (-4.0%)
    // and at causal s4k (-4.4%).
    const bool banded = args.window_left >= 0 || args.window_right >= 0;
    const bool short_sequences =
        std::max(args.seqlen_q, args.seqlen_k) <=
        (banded ? FLASHATTN_SM80_BANDED_COMPACT_MAX : FLASHATTN_SM80_DENSE_COMPACT_MAX);
    if constexpr (FLASHATTN_SM80_COMPACT_PAIRS && CompactPairs::kPairSplit) {
      if (short_sequences && twice_per_sm(CompactPairs::kSmemBytes)) {
        return launch_forward_config<kDType, kWidth, kExtras, false, 1, true>(args, stream);
      }
    }
    if ((banded || kWidth == 192) && short_sequences && twice_per_sm(Compact::kSmemBytes)) {
      return launch_forward_config<kDType, kWidth, kExtras, false>(args, stream);
    }
  }
  if constexpr (Double::kDoubleBufferPays) {
    if (Double::kSmemBytes <= budget &&
        Double::kBlocksPerSm * (Double::kSmemBytes + kReservedSharedMemoryPerBlock) <= per_sm) {
      return launch_forward_config<kDType, kWidth, kExtras, true, 2>(args, stream);
    }
  }
  if (Roomy::kSmemBytes <= budget) {
    return launch_forward_config<kDType, kWidth, kExtras, true>(args, stream);
  }
  if constexpr (Roomy::kHasCompact) {
    if (Compact::kSmemBytes <= budget) {
      return launch_forward_config<kDType, kWidth, kExtras, false>(args, stream);
    }
  }
  return check_shared_memory(Compact::kSmemBytes, budget, kWidth, "cuda forward");
}

}  // namespace flashattn::cuda_sm80
