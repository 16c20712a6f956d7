// The plain-data argument block of the sm80 backward kernels (pre-pass, main kernel,
// post-pass), the layout of their workspace, and the entry points of the compiled instances.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/sm80/dq_tile_layout.h"
#include "cuda/sm80/forward_args.h"
#include "flashattn/types.h"

namespace flashattn::cuda_sm80 {

// Query rows per block of the backward (the main kernel's inner tile, the passes' tile).
inline constexpr int kBackwardBlockM = 64;

// Workspace rows left free after each varlen sequence (at least the main kernel's largest query
// tile less one): a tile that runs past its sequence's end adds its dQ rows there, unmasked.
// Dense sequences take seqlen_q rounded up to a multiple of it instead (dense_workspace_rows),
// which is room enough and no room at all where seqlen_q is a multiple (FA2's seqlen_q_rounded):
// the workspace is cleared before each backward, and a fixed gap was 25% more rows at s512.
// Measured on the H200 (bench/NOTES.md, session 15), bf16, against the gap: s512 +0.6-1.1%,
// s1k +0-0.5%, longer within noise.
// FLASHATTN_SM80_DENSE_ROW_GAP=1 gives dense sequences the varlen gap instead (A/B runs; the
// host's rows_total and the kernels' workspace_slot0 both read it, so a shim needs it on both).
inline constexpr int kWorkspaceRowGap = 128;
#ifndef FLASHATTN_SM80_DENSE_ROW_GAP
#define FLASHATTN_SM80_DENSE_ROW_GAP 0
#endif
__host__ __device__ constexpr int64_t dense_workspace_rows(int64_t seqlen_q) {
  return FLASHATTN_SM80_DENSE_ROW_GAP
             ? seqlen_q + kWorkspaceRowGap
             : (seqlen_q + kWorkspaceRowGap - 1) / kWorkspaceRowGap * kWorkspaceRowGap;
}

// Who clears the workspace (dq_accum, and the semaphores when deterministic): the pre-pass,
// each block its own rows, launched by the main kernel's launch once the dQ tile layout is
// known (one launch less than a memset before it, and the stores overlap the pass's loads of
// O and dO, as FA2's dot_do_o kernel does). FLASHATTN_SM80_CLEAR_IN_PREPARE=0: a memset of the
// whole region before the pre-pass instead (A/B runs; backend.cpp, the passes and the main
// kernel's launch all read it, so a shim needs it on all three).
#ifndef FLASHATTN_SM80_CLEAR_IN_PREPARE
#define FLASHATTN_SM80_CLEAR_IN_PREPARE 1
#endif

// Everything one backward needs. `attention` describes the problem as for the forward: its
// out and lse are the forward's results (read), dropout_mask is unused.
struct BackwardKernelArgs {
  ForwardKernelArgs attention;

  const void* dout;
  int64_t dout_batch_stride, dout_row_stride, dout_head_stride;
  void* dq;
  int64_t dq_batch_stride, dq_row_stride, dq_head_stride;
  void* dk;
  int64_t dk_batch_stride, dk_row_stride, dk_head_stride;
  void* dv;
  int64_t dv_batch_stride, dv_row_stride, dv_head_stride;

  // Workspace, per query head h: slot = h * rows_total + r, with r = b *
  // dense_workspace_rows(seqlen_q) + row (dense) or the packed row + b * kWorkspaceRowGap (varlen):
  float* lse_log2;  // [heads_q * rows_total]: the forward's LSE times log2(e)
  float* delta;     // [heads_q * rows_total]: rowsum(dO * O)
  float* dq_accum;  // [heads_q * rows_total, dq_accum_width]: dQ in fp32 (dq_layout), zeroed
  int* semaphores;  // deterministic: [batch * heads_q * m_blocks], zeroed; else null
                    // (both zeroed by the pre-pass or before it: FLASHATTN_SM80_CLEAR_IN_PREPARE)
  int64_t rows_total;
  int dq_accum_width;      // the tile width
  DqTileLayout dq_layout;  // set by the main kernel's launch, read by the post-pass
  int m_blocks;            // query blocks of the longest sequence
  float dq_scale;          // applied by the post-pass (the softmax scale, 1 with score modifiers)
  // Deterministic, no mask, every key block of a sequence resident at once (set at launch):
  // key block n starts its walk over the query blocks at n * (query blocks / key blocks)
  // and wraps around, and each query block takes the adds in the order the walks reach it,
  // so in step with each other no block waits (else all start at the first query block and
  // add highest key block first, each one waiting for the one above).
  bool rotate_dq_order;

  bool vectorized_dout, vectorized_dq, vectorized_dk, vectorized_dv;
};

// Byte offsets of the workspace regions inside one allocation (each 256-byte aligned).
struct BackwardWorkspaceLayout {
  size_t lse_log2 = 0;
  size_t delta = 0;
  size_t dq_accum = 0;
  size_t semaphores = 0;
  size_t zeroed_begin = 0;  // [zeroed_begin, total): cleared before the main kernel (when
                            // FLASHATTN_SM80_CLEAR_IN_PREPARE=0: by a memset)
  size_t total = 0;
};

BackwardWorkspaceLayout backward_workspace_layout(int64_t heads_q, int64_t rows_total, int width,
                                                  int64_t batch, int m_blocks, bool deterministic);

// One compiled main-kernel instance (src/cuda/instances/backward_*.cu).
template <DType kDType, int kWidth, bool kExtras>
Status launch_backward_main(const BackwardKernelArgs& args, cudaStream_t stream);

// The passes around it (src/cuda/sm80/backward_passes.cu): lse_log2 and delta (and the
// workspace's clearing) before, dq_accum -> dq after (both launched by launch_backward_main,
// which sets dq_layout; with FLASHATTN_SM80_CLEAR_IN_PREPARE=0 the backend launches the first).
Status launch_backward_prepare(DType dtype, const BackwardKernelArgs& args, cudaStream_t stream);
Status launch_backward_finish(DType dtype, const BackwardKernelArgs& args, cudaStream_t stream);

}  // namespace flashattn::cuda_sm80
