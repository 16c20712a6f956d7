// Copies between the caller's strided buffers (any dtype) and the oracle's dense double arrays.
//
// The dense layouts are those of sequences.h. Only the elements of the sequences are touched
// (varlen rows past cu_seqlens[batch] are neither read nor written).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cpu/reference/sequences.h"
#include "flashattn/params.h"

namespace flashattn::reference {

// Which side of the problem a tensor belongs to: q-side rows (q, out, dout, dq) or k-side
// rows (k, v, dk, dv). Decides the sequence rows and the dense row count.
enum class TensorSide { query, key };

// Shape of one operand in the dense layout.
struct DenseShape {
  int64_t rows = 0;   // rows_q or rows_k
  int64_t heads = 0;  // heads_q or heads_kv
  int64_t dim = 0;    // head_dim or head_dim_v
  int64_t size() const { return rows * heads * dim; }
};

DenseShape dense_shape(const AttentionArgs& args, TensorSide side, int64_t heads, int64_t dim);

// Element offset (in elements) of (row of the dense layout, head, d) inside `ref`.
int64_t strided_offset(const AttentionArgs& args, TensorSide side, const TensorRef& ref,
                       int64_t dense_row, int64_t head, int64_t d);

// Reads `ref` (elements of args.dtype) into a dense array of `shape`. Rows outside every
// sequence stay 0.
std::vector<double> gather_tensor(const AttentionArgs& args,
                                  const std::vector<SequenceBounds>& sequences, TensorSide side,
                                  const TensorRef& ref, DenseShape shape);

// Writes a dense array into `ref`, rounding to args.dtype; rows outside sequences untouched.
void scatter_tensor(const AttentionArgs& args, const std::vector<SequenceBounds>& sequences,
                    TensorSide side, std::span<const double> dense, DenseShape shape,
                    const TensorRef& ref);

// Size of the dense LSE ([batch, heads_q, seqlen_q] or [heads_q, total_q]).
int64_t dense_lse_size(const AttentionArgs& args);
// Reads / writes the fp32 LSE with explicit (normalised) strides.
std::vector<double> gather_lse(const AttentionArgs& args,
                               const std::vector<SequenceBounds>& sequences, const LseRef& lse);
void scatter_lse(const AttentionArgs& args, const std::vector<SequenceBounds>& sequences,
                 std::span<const double> dense, const LseRef& lse);

}  // namespace flashattn::reference
