// Where the query rows of one (batch, head) live for the backward: in the caller's q-shaped
// tensors (dout, dq) and in the workspace's per-row slots. Shared by the passes and the main
// kernel so that all three address the same rows.
#pragma once

#include <cstdint>

#include "cuda/sm80/backward_args.h"
#include "cuda/sm80/sequence_view.cuh"

namespace flashattn::cuda_sm80 {

// Element offset of the first query row of sequence b, head h, in a tensor laid out like q
// with the given strides (varlen: packed rows, the batch stride unused).
__device__ __forceinline__ int64_t query_rows_offset(const ForwardKernelArgs& args,
                                                     const SequenceView& seq, int b, int h,
                                                     int64_t batch_stride, int64_t row_stride,
                                                     int64_t head_stride) {
  const bool varlen = args.cu_seqlens_q != nullptr;
  return (varlen ? seq.q_row0 * row_stride : b * batch_stride) + h * head_stride;
}

// Workspace slot (lse_log2, delta, dq_accum row) of the first query row of sequence b, head h:
// dense sequences dense_workspace_rows(seqlen_q) apart, varlen ones kWorkspaceRowGap rows after
// each other's end (rows_total on the host).
__device__ __forceinline__ int64_t workspace_slot0(const BackwardKernelArgs& args,
                                                   const SequenceView& seq, int b, int h) {
  const bool varlen = args.attention.cu_seqlens_q != nullptr;
  return h * args.rows_total + (varlen
                                    ? seq.q_row0 + int64_t{b} * kWorkspaceRowGap
                                    : int64_t{b} * dense_workspace_rows(args.attention.seqlen_q));
}

}  // namespace flashattn::cuda_sm80
