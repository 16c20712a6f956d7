// Per-sequence bounds (dense, varlen, seqused_k) and strided offsets of the tiled backend.
#include "cpu/tiled/problem.h"

#include <omp.h>

namespace flashattn::cpu_tiled {

Problem make_problem(const AttentionArgs& args) {
  Problem problem;
  problem.args = &args;
  problem.varlen = args.cu_seqlens_q != nullptr;
  problem.group = args.heads_q / args.heads_kv;
  problem.sequences.resize(static_cast<size_t>(args.batch));
  for (int64_t b = 0; b < args.batch; ++b) {
    static_cast<cpu::SequenceBounds&>(problem.sequences[static_cast<size_t>(b)]) =
        cpu::bounds_of_sequence(args, b);
  }
  return problem;
}

// Varlen folds the batch into the rows, so batch_stride only applies to dense tensors.
int64_t Problem::q_offset(const TensorRef& ref, int64_t batch_index, int64_t row,
                          int64_t head) const {
  const Sequence& sequence = sequences[static_cast<size_t>(batch_index)];
  if (varlen) return (sequence.q_row0 + row) * ref.row_stride + head * ref.head_stride;
  return batch_index * ref.batch_stride + row * ref.row_stride + head * ref.head_stride;
}

int64_t Problem::k_offset(const TensorRef& ref, int64_t batch_index, int64_t row,
                          int64_t head) const {
  const Sequence& sequence = sequences[static_cast<size_t>(batch_index)];
  if (varlen) return (sequence.k_row0 + row) * ref.row_stride + head * ref.head_stride;
  return batch_index * ref.batch_stride + row * ref.row_stride + head * ref.head_stride;
}

int64_t Problem::lse_offset(const LseRef& lse, int64_t batch_index, int64_t head,
                            int64_t row) const {
  const Sequence& sequence = sequences[static_cast<size_t>(batch_index)];
  if (varlen) return head * lse.head_stride + sequence.q_row0 + row;
  return batch_index * lse.batch_stride + head * lse.head_stride + row;
}

int thread_count(const AttentionArgs& args) {
  return args.num_threads > 0 ? args.num_threads : omp_get_max_threads();
}

}  // namespace flashattn::cpu_tiled
