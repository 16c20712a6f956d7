// Where the sequence of one (batch, head) lives in the operands: lengths after varlen and
// seqused_k, and the element offsets of q, k, v and out. Shared by the forward and backward.
#pragma once

#include <cstdint>

#include "cuda/sm80/forward_args.h"

namespace flashattn::cuda_sm80 {

// Where one (batch, head) problem lives: sequence lengths and operand views.
struct SequenceView {
  int len_q;       // query rows of this sequence
  int len_k;       // keys that take part (seqused_k applied): the mask's seqlen_k
  int len_k_rows;  // rows of k / v in this sequence (>= len_k): the backward's dK/dV rows
  int64_t q_row0;  // packed row of the first query (varlen), else 0
  int64_t k_row0;  // packed row of the first key (varlen), else 0
  int64_t q_offset, k_offset, v_offset, out_offset;
};

__device__ __forceinline__ SequenceView sequence_view(const ForwardKernelArgs& args, int b, int h) {
  SequenceView view{};
  const int h_kv = h / (args.heads_q / args.heads_kv);
  if (args.cu_seqlens_q != nullptr) {
    // cu_seqlens cannot be checked on the host for device memory: clamp to the declared sizes
    // so that inconsistent values give wrong rows, never out-of-bounds accesses.
    const int64_t q_begin = min(max(int64_t{args.cu_seqlens_q[b]}, int64_t{0}), args.total_q);
    const int64_t q_end = min(max(int64_t{args.cu_seqlens_q[b + 1]}, q_begin), args.total_q);
    const int64_t k_begin = min(max(int64_t{args.cu_seqlens_k[b]}, int64_t{0}), args.total_k);
    const int64_t k_end = min(max(int64_t{args.cu_seqlens_k[b + 1]}, k_begin), args.total_k);
    view.q_row0 = q_begin;
    view.k_row0 = k_begin;
    view.len_q = static_cast<int>(min(q_end - q_begin, int64_t{args.seqlen_q}));
    view.len_k = static_cast<int>(min(k_end - k_begin, int64_t{args.seqlen_k}));
    view.len_k_rows = view.len_k;
    view.q_offset = q_begin * args.q_row_stride;
    view.k_offset = view.k_row0 * args.k_row_stride;
    view.v_offset = view.k_row0 * args.v_row_stride;
    view.out_offset = q_begin * args.out_row_stride;
  } else {
    view.len_q = args.seqlen_q;
    view.len_k = args.seqlen_k;
    view.len_k_rows = args.seqlen_k;
    view.q_offset = b * args.q_batch_stride;
    view.k_offset = b * args.k_batch_stride;
    view.v_offset = b * args.v_batch_stride;
    view.out_offset = b * args.out_batch_stride;
  }
  if (args.seqused_k != nullptr) view.len_k = max(0, min(args.seqused_k[b], view.len_k));
  view.q_offset += h * args.q_head_stride;
  view.k_offset += h_kv * args.k_head_stride;
  view.v_offset += h_kv * args.v_head_stride;
  view.out_offset += h * args.out_head_stride;
  return view;
}

// Offset of (b, h, row 0) in the forward's LSE: [batch, heads, seqlen_q] strides dense, packed
// rows of [heads, total_q] varlen.
__device__ __forceinline__ int64_t lse_offset(const ForwardKernelArgs& args,
                                              const SequenceView& seq, int b, int h) {
  return args.cu_seqlens_q != nullptr ? h * args.lse_head_stride + seq.q_row0
                                      : b * args.lse_batch_stride + h * args.lse_head_stride;
}

}  // namespace flashattn::cuda_sm80
