// Fills the defaults of validated params (softmax scale, head_dim_v, window, LSE strides).
#pragma once

#include "flashattn/params.h"

namespace flashattn::detail {

// Resolves the shorthands of AttentionArgs in place: softmax_scale NaN -> 1/sqrt(head_dim),
// head_dim_v 0 -> head_dim, causal folded into window_right = 0.
void normalize_args(AttentionArgs& args);
// Contiguous LSE strides for the zero shorthand ([batch, heads, seqlen_q] dense,
// [heads, total_q] varlen).
void normalize_lse(const AttentionArgs& args, LseRef& lse);

inline bool is_varlen(const AttentionArgs& args) { return args.cu_seqlens_q != nullptr; }

}  // namespace flashattn::detail
