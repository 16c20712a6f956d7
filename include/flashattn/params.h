// Plain-data parameter structs for forward and backward: pointers, sizes, int64 strides, flags.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "flashattn/types.h"

namespace flashattn {

// A strided view of one attention operand. Strides count elements (not bytes).
//
// Dense layout:  element (b, s, h, d) is at data + b*batch_stride + s*row_stride
//                + h*head_stride + d*dim_stride.
// Varlen layout: the batch dimension is folded into the rows (token t of sequence b is
//                row cu_seqlens[b] + t); batch_stride is ignored.
// dim_stride must be 1: it is there so that a caller with a non-contiguous last dimension
// gets a named error instead of a wrong result.
struct TensorRef {
  void* data = nullptr;
  int64_t batch_stride = 0;
  int64_t row_stride = 0;
  int64_t head_stride = 0;
  int64_t dim_stride = 1;
};

// Strides of the fp32 log-sum-exp, element (b, h, i) at lse + b*batch_stride + h*head_stride
// + i. In varlen mode i is the packed token index (cu_seqlens_q[b] + row) and batch_stride
// is ignored. Zero strides mean "contiguous": [batch, heads_q, seqlen_q] dense,
// [heads_q, total_q] varlen (flash_attn 2.x layouts).
struct LseRef {
  float* data = nullptr;
  int64_t batch_stride = 0;
  int64_t head_stride = 0;
};

inline constexpr float kDefaultSoftmaxScale = std::numeric_limits<float>::quiet_NaN();

// Everything that defines the attention problem; shared by forward and backward.
struct AttentionArgs {
  Device device = Device::cpu;
  Backend backend = Backend::automatic;
  DType dtype = DType::bf16;

  // Sizes. In varlen mode (cu_seqlens_q set) seqlen_q / seqlen_k are the maxima over the
  // batch (max_seqlen_q / max_seqlen_k of flash_attn) and total_q / total_k the packed
  // token counts.
  int64_t batch = 0;
  int64_t seqlen_q = 0;
  int64_t seqlen_k = 0;
  int64_t heads_q = 0;
  int64_t heads_kv = 0;
  int64_t head_dim = 0;
  int64_t head_dim_v = 0;  // 0 means "same as head_dim"

  TensorRef q;  // [batch, seqlen_q, heads_q, head_dim]
  TensorRef k;  // [batch, seqlen_k, heads_kv, head_dim]
  TensorRef v;  // [batch, seqlen_k, heads_kv, head_dim_v]

  // Varlen: int32 prefix sums of length batch + 1, on `device`. Both or neither.
  const int32_t* cu_seqlens_q = nullptr;
  const int32_t* cu_seqlens_k = nullptr;
  // Optional, int32 [batch]: only the first seqused_k[b] keys of sequence b take part.
  const int32_t* seqused_k = nullptr;
  int64_t total_q = 0;
  int64_t total_k = 0;

  // NaN means 1/sqrt(head_dim).
  float softmax_scale = kDefaultSoftmaxScale;

  // Masks, aligned to the bottom-right corner: query i sees key j iff
  // i + seqlen_k - seqlen_q - window_left <= j <= i + seqlen_k - seqlen_q + window_right,
  // -1 meaning unbounded. causal is window (-1, 0) and may be combined with window_left.
  bool causal = false;
  int64_t window_left = -1;
  int64_t window_right = -1;

  // c > 0: scores become c * tanh(s / c) before masking and softmax. 0 disables it.
  float softcap = 0.0f;

  // fp32 slopes, [heads_q] (alibi_batch_stride 0) or [batch, heads_q] (stride in elements).
  // Bias added to the scaled score: -slope * |i + seqlen_k - seqlen_q - j|.
  const float* alibi_slopes = nullptr;
  int64_t alibi_batch_stride = 0;

  // Dropout on the attention probabilities, Philox4x32-10 keyed by (seed, offset) and
  // counted by (batch, head, row, col): every backend drops the same elements.
  float dropout_p = 0.0f;
  uint64_t dropout_seed = 0;
  uint64_t dropout_offset = 0;
  // Optional: two int64 {seed, offset} on `device`, read when the call runs instead of
  // dropout_seed / dropout_offset. A CUDA graph then replays with whatever a captured RNG kernel
  // wrote there, so each replay drops a fresh pattern (the forward and its backward read the
  // same pair). The values are reinterpreted as uint64.
  const int64_t* dropout_seed_offset = nullptr;

  // cudaStream_t when device == cuda; ignored on the CPU.
  void* stream = nullptr;
  // CPU backends: number of OpenMP threads, 0 meaning the OpenMP default.
  int num_threads = 0;
};

struct ForwardParams : AttentionArgs {
  TensorRef out;  // like q, with head_dim_v
  LseRef lse;     // optional (data may be null)
  // Optional, for tests: uint8 [batch, heads_q, seqlen_q, seqlen_k] (dense, contiguous;
  // varlen uses seqlen_q/seqlen_k as the maxima), 1 where the element was kept, 0 where
  // dropped. Only written when dropout_p > 0.
  uint8_t* dropout_mask = nullptr;
};

struct BackwardParams : AttentionArgs {
  TensorRef out;   // forward output
  TensorRef dout;  // gradient of the loss w.r.t. out
  LseRef lse;      // the forward's LSE (read only here), same layout as the forward's

  TensorRef dq;  // like q
  TensorRef dk;  // like k
  TensorRef dv;  // like v

  // Bitwise reproducible results from run to run (no order-dependent atomics).
  bool deterministic = false;

  // Scratch space on `device`. Null means the library allocates (and frees) it;
  // otherwise it must hold backward_workspace_size(params) bytes.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

}  // namespace flashattn
