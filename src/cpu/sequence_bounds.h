// Where sequence b of a dense or varlen batch lives, shared by the CPU backends.
#pragma once

#include <cstdint>

#include "flashattn/params.h"

namespace flashattn::cpu {

// Rows of sequence b in the q-side and k-side tensors and how many keys take part.
struct SequenceBounds {
  int64_t q_row0 = 0;  // first q-side row (dense: b * seqlen_q, varlen: cu_seqlens_q[b])
  int64_t len_q = 0;
  int64_t k_row0 = 0;  // first k-side row
  int64_t len_k = 0;   // keys stored for the sequence
  int64_t used_k = 0;  // keys that take part (seqused_k, else len_k): the mask's seqlen_k
};

// Reads cu_seqlens / seqused_k from host memory; the caller has checked them (src/api
// validation, or the reference's own checks on its dense path).
inline SequenceBounds bounds_of_sequence(const AttentionArgs& args, int64_t b) {
  SequenceBounds sequence;
  if (args.cu_seqlens_q != nullptr) {
    sequence.q_row0 = args.cu_seqlens_q[b];
    sequence.len_q = args.cu_seqlens_q[b + 1] - args.cu_seqlens_q[b];
    sequence.k_row0 = args.cu_seqlens_k[b];
    sequence.len_k = args.cu_seqlens_k[b + 1] - args.cu_seqlens_k[b];
  } else {
    sequence.q_row0 = b * args.seqlen_q;
    sequence.len_q = args.seqlen_q;
    sequence.k_row0 = b * args.seqlen_k;
    sequence.len_k = args.seqlen_k;
  }
  sequence.used_k = args.seqused_k != nullptr ? args.seqused_k[b] : sequence.len_k;
  return sequence;
}

}  // namespace flashattn::cpu
