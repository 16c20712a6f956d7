// Shorthands for test tables: one AttentionCase per line, e.g.
//   dropout(causal(dense(DType::bf16, 3, 203, 113, 4, 1, 64)), 0.2f)
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "support/attention_case.h"

namespace flashattn::testing {

inline AttentionCase dense(DType dtype, int64_t batch, int64_t seqlen_q, int64_t seqlen_k,
                           int64_t heads_q, int64_t heads_kv, int64_t head_dim) {
  AttentionCase c;
  c.dtype = dtype;
  c.batch = batch;
  c.seqlen_q = seqlen_q;
  c.seqlen_k = seqlen_k;
  c.heads_q = heads_q;
  c.heads_kv = heads_kv;
  c.head_dim = head_dim;
  return c;
}

inline AttentionCase varlen(DType dtype, std::vector<std::pair<int64_t, int64_t>> lengths,
                            int64_t heads_q, int64_t heads_kv, int64_t head_dim) {
  AttentionCase c = dense(dtype, 1, 1, 1, heads_q, heads_kv, head_dim);
  c.varlen = std::move(lengths);
  return c;
}

inline AttentionCase causal(AttentionCase c) {
  c.causal = true;
  return c;
}
inline AttentionCase window(AttentionCase c, int64_t left, int64_t right) {
  c.window_left = left;
  c.window_right = right;
  return c;
}
inline AttentionCase softcap(AttentionCase c, float cap) {
  c.softcap = cap;
  return c;
}
inline AttentionCase alibi(AttentionCase c, AlibiMode mode) {
  c.alibi = mode;
  return c;
}
inline AttentionCase dropout(AttentionCase c, float p) {
  c.dropout_p = p;
  return c;
}
inline AttentionCase seqused(AttentionCase c) {
  c.use_seqused_k = true;
  return c;
}
inline AttentionCase layout(AttentionCase c, Layout l) {
  c.layout = l;
  return c;
}
inline AttentionCase scale(AttentionCase c, float s) {
  c.softmax_scale = s;
  return c;
}
inline AttentionCase value_dim(AttentionCase c, int64_t head_dim_v) {
  c.head_dim_v = head_dim_v;
  return c;
}

}  // namespace flashattn::testing
