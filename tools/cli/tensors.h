// The operands of one problem: allocation on its device, random inputs, NaN-poisoned outputs.
#pragma once

#include "buffer.h"
#include "problem.h"

namespace flashattn::cli {

// Every tensor is contiguous: dense [batch, seqlen, heads, dim], varlen [total, heads, dim];
// LSE [batch, heads_q, seqlen_q] dense, [heads_q, total_q] varlen (the library's defaults).
struct Tensors {
  Buffer q, k, v, dout;  // inputs, random normal
  Buffer out, lse;       // forward outputs, NaN until written
  Buffer dq, dk, dv;     // backward outputs, NaN until written
  Buffer cu_seqlens_q;   // int32 [batch + 1], varlen only
  Buffer cu_seqlens_k;   // int32 [batch + 1], varlen only
  Buffer alibi_slopes;   // fp32 [heads_q], --alibi only
};

// Allocates on problem.device and initialises. Throws std::runtime_error when memory runs out.
Tensors make_tensors(const Problem& problem);

// A copy of every tensor in host memory (for the reference check).
Tensors to_host(const Tensors& tensors);

}  // namespace flashattn::cli
