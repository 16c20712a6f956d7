// Checks of the varlen metadata: cu_seqlens_q / cu_seqlens_k, total_q / total_k, seqused_k.
#include <cstdint>
#include <limits>
#include <string>

#include "api/validate_args.h"
#include "api/validate_common.h"

namespace flashattn::detail {
namespace {

// One side (q or k) of the varlen description, with the names its messages use.
struct PackedSide {
  const char* cu_name;      // "cu_seqlens_q"
  const char* total_name;   // "total_q"
  const char* seqlen_name;  // "seqlen_q"
  const int32_t* cu_seqlens;
  int64_t total;
  int64_t max_seqlen;
};

// Scalar consistency that holds whatever the array holds (and is all CUDA can check here).
Status check_totals(const PackedSide& side, int64_t batch) {
  if (Status status = check_non_negative(side.total_name, side.total); !status.ok()) return status;
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  if (side.total > kInt32Max) {
    return invalid(side.total_name, "expected at most " + std::to_string(kInt32Max) + " (" +
                                        side.cu_name + " is int32), got " +
                                        std::to_string(side.total));
  }
  int64_t capacity = 0;
  if (checked_mul(batch, side.max_seqlen, &capacity) && side.total > capacity) {
    return invalid(side.total_name, std::string("expected at most batch * ") + side.seqlen_name +
                                        " = " + std::to_string(capacity) + ", got " +
                                        std::to_string(side.total));
  }
  return Status::Ok();
}

// Host-readable prefix sums: start at 0, never decrease, no sequence longer than the
// maximum, end at the total.
Status check_prefix_sums(const PackedSide& side, int64_t batch) {
  const std::string name = side.cu_name;
  const int32_t* cu = side.cu_seqlens;
  if (cu[0] != 0) {
    return invalid(name, "expected " + name + "[0] = 0, got " + std::to_string(cu[0]));
  }
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t length = static_cast<int64_t>(cu[b + 1]) - cu[b];
    if (length < 0) {
      return invalid(name, "expected non-decreasing values, got " + name + "[" +
                               std::to_string(b + 1) + "] = " + std::to_string(cu[b + 1]) +
                               " after " + name + "[" + std::to_string(b) +
                               "] = " + std::to_string(cu[b]));
    }
    if (length > side.max_seqlen) {
      return invalid(name, "sequence " + std::to_string(b) + " has " + std::to_string(length) +
                               " tokens, expected at most " + side.seqlen_name + " = " +
                               std::to_string(side.max_seqlen));
    }
  }
  if (cu[batch] != side.total) {
    return invalid(side.total_name, "expected " + name + "[batch] = " + std::to_string(cu[batch]) +
                                        ", got " + std::to_string(side.total));
  }
  return Status::Ok();
}

Status check_seqused(const AttentionArgs& args, bool varlen) {
  for (int64_t b = 0; b < args.batch; ++b) {
    const int64_t keys = varlen
                             ? static_cast<int64_t>(args.cu_seqlens_k[b + 1]) - args.cu_seqlens_k[b]
                             : args.seqlen_k;
    const int32_t used = args.seqused_k[b];
    if (used < 0 || used > keys) {
      return invalid("seqused_k", "expected seqused_k[" + std::to_string(b) + "] in [0, " +
                                      std::to_string(keys) + "], got " + std::to_string(used));
    }
  }
  return Status::Ok();
}

}  // namespace

Status check_varlen(const AttentionArgs& args) {
  const bool has_q = args.cu_seqlens_q != nullptr;
  const bool has_k = args.cu_seqlens_k != nullptr;
  if (has_q && !has_k) {
    return invalid("cu_seqlens_k", "expected set together with cu_seqlens_q (varlen), got null");
  }
  if (has_k && !has_q) {
    return invalid("cu_seqlens_q", "expected set together with cu_seqlens_k (varlen), got null");
  }
  const bool host_readable = args.device == Device::cpu;
  if (has_q) {
    const PackedSide sides[] = {
        {"cu_seqlens_q", "total_q", "seqlen_q", args.cu_seqlens_q, args.total_q, args.seqlen_q},
        {"cu_seqlens_k", "total_k", "seqlen_k", args.cu_seqlens_k, args.total_k, args.seqlen_k},
    };
    for (const PackedSide& side : sides) {
      if (Status status = check_totals(side, args.batch); !status.ok()) return status;
    }
    for (const PackedSide& side : sides) {
      if (!host_readable) break;
      if (Status status = check_prefix_sums(side, args.batch); !status.ok()) return status;
    }
  }
  if (args.seqused_k != nullptr && host_readable) return check_seqused(args, has_q);
  return Status::Ok();
}

}  // namespace flashattn::detail
