// Per-sequence bounds (dense, varlen, seqused_k) and the dense packed layout of the oracle.
//
// The reference works on dense arrays in one fixed layout, whatever the caller's strides:
//   q, dq, out, dout: [rows_q, heads_q, dim]   rows_q = batch * seqlen_q, or total_q (varlen)
//   k, v, dk, dv:     [rows_k, heads_kv, dim]  rows_k = batch * seqlen_k, or total_k (varlen)
//   lse:              [batch, heads_q, seqlen_q], or [heads_q, total_q] (varlen)
// Token t of sequence b is row b * seqlen + t (dense) or cu_seqlens[b] + t (varlen).
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/sequence_bounds.h"
#include "flashattn/params.h"
#include "flashattn/types.h"

namespace flashattn::reference {

// Where sequence b lives in the dense arrays and how much of it takes part.
using SequenceBounds = cpu::SequenceBounds;

inline bool is_varlen_args(const AttentionArgs& args) {
  return args.cu_seqlens_q != nullptr;
}
inline int64_t rows_q(const AttentionArgs& args) {
  return is_varlen_args(args) ? args.total_q : args.batch * args.seqlen_q;
}
inline int64_t rows_k(const AttentionArgs& args) {
  return is_varlen_args(args) ? args.total_k : args.batch * args.seqlen_k;
}

// Reads cu_seqlens / seqused_k (host memory) and checks them against the sizes: prefix sums
// start at 0, never decrease, stay within total and within the max seqlen; 0 <= seqused_k[b]
// <= len_k. Failures name the argument.
Status sequence_bounds(const AttentionArgs& args, std::vector<SequenceBounds>* bounds);

// Index of element (b, h, row) of the dense LSE layout above.
inline int64_t dense_lse_index(const AttentionArgs& args, const SequenceBounds& sequence,
                               int64_t batch_index, int64_t head, int64_t row) {
  if (is_varlen_args(args)) return head * args.total_q + sequence.q_row0 + row;
  return (batch_index * args.heads_q + head) * args.seqlen_q + row;
}

}  // namespace flashattn::reference
