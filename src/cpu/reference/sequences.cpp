// Per-sequence bounds of the oracle, read from cu_seqlens / seqused_k and checked.
#include "cpu/reference/sequences.h"

#include <string>

namespace flashattn::reference {
namespace {

// Checks one cu_seqlens array: cu[0] == 0, non-decreasing, steps <= max_len, cu[batch] <= total.
Status check_prefix_sums(const char* name, const int32_t* cu, int64_t batch, int64_t max_len,
                         int64_t total) {
  if (cu[0] != 0) {
    return Status::InvalidArgument(std::string(name) + "[0]: expected 0, got " +
                                   std::to_string(cu[0]));
  }
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t length = static_cast<int64_t>(cu[b + 1]) - cu[b];
    if (length < 0 || length > max_len) {
      return Status::InvalidArgument(std::string(name) + ": sequence " + std::to_string(b) +
                                     " has length " + std::to_string(length) + ", expected 0.." +
                                     std::to_string(max_len));
    }
  }
  if (cu[batch] > total) {
    return Status::InvalidArgument(std::string(name) + "[batch]: " + std::to_string(cu[batch]) +
                                   " exceeds the total token count " + std::to_string(total));
  }
  return Status::Ok();
}

}  // namespace

Status sequence_bounds(const AttentionArgs& args, std::vector<SequenceBounds>* bounds) {
  bounds->assign(static_cast<size_t>(args.batch), SequenceBounds{});
  const bool varlen = is_varlen_args(args);
  if (varlen) {
    if (args.cu_seqlens_k == nullptr) {
      return Status::InvalidArgument("cu_seqlens_k: required with cu_seqlens_q");
    }
    if (Status status = check_prefix_sums("cu_seqlens_q", args.cu_seqlens_q, args.batch,
                                          args.seqlen_q, args.total_q);
        !status.ok()) {
      return status;
    }
    if (Status status = check_prefix_sums("cu_seqlens_k", args.cu_seqlens_k, args.batch,
                                          args.seqlen_k, args.total_k);
        !status.ok()) {
      return status;
    }
  }
  for (int64_t b = 0; b < args.batch; ++b) {
    SequenceBounds& sequence = (*bounds)[static_cast<size_t>(b)];
    sequence = cpu::bounds_of_sequence(args, b);
    if (sequence.used_k < 0 || sequence.used_k > sequence.len_k) {
      return Status::InvalidArgument("seqused_k[" + std::to_string(b) + "]: expected 0.." +
                                     std::to_string(sequence.len_k) + ", got " +
                                     std::to_string(sequence.used_k));
    }
  }
  return Status::Ok();
}

}  // namespace flashattn::reference
