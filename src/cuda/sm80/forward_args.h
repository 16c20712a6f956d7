// The plain-data argument block of the sm80 forward kernels and the entry point of each
// compiled instance; shared by the host-side backend (C++) and the kernels (CUDA).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "flashattn/types.h"

namespace flashattn::cuda_sm80 {

// Everything one launch needs, filled by the backend from validated, normalised params.
// Strides count elements. Dense: sequence b of q starts at b * q_batch_stride; varlen: at row
// cu_seqlens_q[b] (batch strides unused).
struct ForwardKernelArgs {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  float* lse;             // may be null
  uint8_t* dropout_mask;  // may be null

  int64_t q_batch_stride, q_row_stride, q_head_stride;
  int64_t k_batch_stride, k_row_stride, k_head_stride;
  int64_t v_batch_stride, v_row_stride, v_head_stride;
  int64_t out_batch_stride, out_row_stride, out_head_stride;
  int64_t lse_batch_stride, lse_head_stride;

  const int32_t* cu_seqlens_q;  // null: dense
  const int32_t* cu_seqlens_k;
  const int32_t* seqused_k;  // may be null
  int64_t total_q, total_k;  // varlen: rows of the packed tensors (bounds for cu_seqlens)

  int batch, heads_q, heads_kv;
  int seqlen_q, seqlen_k;  // dense lengths; varlen maxima
  int head_dim, head_dim_v;

  float softmax_scale;
  float softcap;  // 0: off
  const float* alibi_slopes;
  int64_t alibi_batch_stride;
  int64_t window_left, window_right;  // effective window, -1 unbounded

  float dropout_p;
  uint64_t dropout_seed, dropout_offset;
  const int64_t* dropout_seed_offset;  // device {seed, offset} overriding the two above, or null
  uint32_t keep_threshold;             // dropout_keep_threshold(p): kept iff a 16-bit value < it

  // 16-byte accesses allowed (base pointer and every stride that moves between rows).
  bool vectorized_q, vectorized_k, vectorized_v, vectorized_out;
};

// Tile widths of head_dim (and head_dim_v) that have kernels, smallest first.
inline constexpr int kTileWidths[] = {32, 64, 96, 128, 192, 256};

// One compiled instance: element type, tile width, and whether the score modifiers (softcap,
// ALiBi, dropout, non-positive scale) are compiled in. Defined in src/cuda/instances/*.cu.
template <DType kDType, int kWidth, bool kExtras>
Status launch_forward(const ForwardKernelArgs& args, cudaStream_t stream);

}  // namespace flashattn::cuda_sm80
