// Checks of the scalar arguments shared by forward and backward, one concern per source file:
// sizes and enums (validate_sizes.cpp), varlen metadata (validate_varlen.cpp), score and
// dropout options (validate_options.cpp).
#pragma once

#include "flashattn/params.h"
#include "flashattn/types.h"

namespace flashattn::detail {

// device, backend and dtype hold values of their enums.
Status check_enums(const AttentionArgs& args);
// batch, seqlen_q, seqlen_k >= 0; head_dim (and head_dim_v when set) in 1..256;
// heads_kv >= 1 dividing heads_q.
Status check_sizes(const AttentionArgs& args);
// Valid arguments that this library cannot run as asked: a backend on the wrong device,
// fp32 on CUDA. Returns Unsupported; run after every InvalidArgument check.
Status check_support(const AttentionArgs& args);

// cu_seqlens_q / cu_seqlens_k / total_q / total_k and seqused_k. The int32 arrays are read
// only on Device::cpu; on CUDA only their presence and the scalar sizes are checked.
Status check_varlen(const AttentionArgs& args);

// softmax_scale, the window, softcap, ALiBi slopes, dropout_p, num_threads.
Status check_options(const AttentionArgs& args);

// The head_dim of v and out: head_dim_v, or head_dim when head_dim_v is 0.
inline int64_t value_head_dim(const AttentionArgs& args) {
  return args.head_dim_v == 0 ? args.head_dim : args.head_dim_v;
}

}  // namespace flashattn::detail
