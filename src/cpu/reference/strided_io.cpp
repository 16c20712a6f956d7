// Copies between strided caller buffers and the oracle's dense double arrays.
#include "cpu/reference/strided_io.h"

#include "cpu/element.h"

namespace flashattn::reference {
namespace {

int64_t side_seqlen(const AttentionArgs& args, TensorSide side) {
  return side == TensorSide::query ? args.seqlen_q : args.seqlen_k;
}

// Calls visit(dense_row) for every row that belongs to a sequence.
template <typename Visit>
void for_each_sequence_row(const std::vector<SequenceBounds>& sequences, TensorSide side,
                           Visit&& visit) {
  for (const SequenceBounds& sequence : sequences) {
    const int64_t first = side == TensorSide::query ? sequence.q_row0 : sequence.k_row0;
    const int64_t count = side == TensorSide::query ? sequence.len_q : sequence.len_k;
    for (int64_t row = first; row < first + count; ++row) visit(row);
  }
}

}  // namespace

DenseShape dense_shape(const AttentionArgs& args, TensorSide side, int64_t heads, int64_t dim) {
  return DenseShape{side == TensorSide::query ? rows_q(args) : rows_k(args), heads, dim};
}

int64_t strided_offset(const AttentionArgs& args, TensorSide side, const TensorRef& ref,
                       int64_t dense_row, int64_t head, int64_t d) {
  int64_t offset = head * ref.head_stride + d * ref.dim_stride;
  if (is_varlen_args(args)) return offset + dense_row * ref.row_stride;
  const int64_t seqlen = side_seqlen(args, side);
  return offset + (dense_row / seqlen) * ref.batch_stride + (dense_row % seqlen) * ref.row_stride;
}

std::vector<double> gather_tensor(const AttentionArgs& args,
                                  const std::vector<SequenceBounds>& sequences, TensorSide side,
                                  const TensorRef& ref, DenseShape shape) {
  std::vector<double> dense(static_cast<size_t>(shape.size()), 0.0);
  for_each_sequence_row(sequences, side, [&](int64_t row) {
    for (int64_t head = 0; head < shape.heads; ++head) {
      const int64_t base = strided_offset(args, side, ref, row, head, 0);
      double* target = dense.data() + (row * shape.heads + head) * shape.dim;
      for (int64_t d = 0; d < shape.dim; ++d) {
        target[d] = cpu::load_as_float(ref.data, base + d * ref.dim_stride, args.dtype);
      }
    }
  });
  return dense;
}

void scatter_tensor(const AttentionArgs& args, const std::vector<SequenceBounds>& sequences,
                    TensorSide side, std::span<const double> dense, DenseShape shape,
                    const TensorRef& ref) {
  for_each_sequence_row(sequences, side, [&](int64_t row) {
    for (int64_t head = 0; head < shape.heads; ++head) {
      const int64_t base = strided_offset(args, side, ref, row, head, 0);
      const double* source = dense.data() + (row * shape.heads + head) * shape.dim;
      for (int64_t d = 0; d < shape.dim; ++d) {
        cpu::store_from_float(ref.data, base + d * ref.dim_stride, args.dtype,
                              static_cast<float>(source[d]));
      }
    }
  });
}

int64_t dense_lse_size(const AttentionArgs& args) {
  return is_varlen_args(args) ? args.heads_q * args.total_q
                              : args.batch * args.heads_q * args.seqlen_q;
}

std::vector<double> gather_lse(const AttentionArgs& args,
                               const std::vector<SequenceBounds>& sequences, const LseRef& lse) {
  std::vector<double> dense(static_cast<size_t>(dense_lse_size(args)), 0.0);
  const bool varlen = is_varlen_args(args);
  for (int64_t b = 0; b < args.batch; ++b) {
    const SequenceBounds& sequence = sequences[static_cast<size_t>(b)];
    for (int64_t head = 0; head < args.heads_q; ++head) {
      for (int64_t row = 0; row < sequence.len_q; ++row) {
        const int64_t position = varlen ? sequence.q_row0 + row : row;
        const int64_t offset =
            (varlen ? 0 : b * lse.batch_stride) + head * lse.head_stride + position;
        dense[static_cast<size_t>(dense_lse_index(args, sequence, b, head, row))] =
            lse.data[offset];
      }
    }
  }
  return dense;
}

void scatter_lse(const AttentionArgs& args, const std::vector<SequenceBounds>& sequences,
                 std::span<const double> dense, const LseRef& lse) {
  const bool varlen = is_varlen_args(args);
  for (int64_t b = 0; b < args.batch; ++b) {
    const SequenceBounds& sequence = sequences[static_cast<size_t>(b)];
    for (int64_t head = 0; head < args.heads_q; ++head) {
      for (int64_t row = 0; row < sequence.len_q; ++row) {
        const int64_t position = varlen ? sequence.q_row0 + row : row;
        const int64_t offset =
            (varlen ? 0 : b * lse.batch_stride) + head * lse.head_stride + position;
        lse.data[offset] = static_cast<float>(
            dense[static_cast<size_t>(dense_lse_index(args, sequence, b, head, row))]);
      }
    }
  }
}

}  // namespace flashattn::reference
