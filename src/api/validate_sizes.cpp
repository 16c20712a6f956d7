// Size, enum and device/backend/dtype checks of the arguments shared by forward and backward.
#include <string>

#include "api/validate_args.h"
#include "api/validate_common.h"

namespace flashattn::detail {
namespace {

constexpr int64_t kMaxHeadDim = 256;

bool is_cpu_backend(Backend backend) {
  return backend == Backend::cpu_reference || backend == Backend::cpu_tiled;
}

bool is_cuda_backend(Backend backend) {
  return backend == Backend::cuda_sm80 || backend == Backend::cuda_sm90;
}

}  // namespace

Status check_enums(const AttentionArgs& args) {
  const auto device = static_cast<int32_t>(args.device);
  if (device < static_cast<int32_t>(Device::cpu) || device > static_cast<int32_t>(Device::cuda)) {
    return invalid("device", "expected cpu or cuda, got " + std::to_string(device));
  }
  const auto backend = static_cast<int32_t>(args.backend);
  if (backend < static_cast<int32_t>(Backend::automatic) ||
      backend > static_cast<int32_t>(Backend::cuda_sm90)) {
    return invalid("backend",
                   "expected automatic, cpu_reference, cpu_tiled, cuda_sm80 or cuda_sm90, got " +
                       std::to_string(backend));
  }
  const auto dtype = static_cast<int32_t>(args.dtype);
  if (dtype < static_cast<int32_t>(DType::fp16) || dtype > static_cast<int32_t>(DType::fp32)) {
    return invalid("dtype", "expected fp16, bf16 or fp32, got " + std::to_string(dtype));
  }
  return Status::Ok();
}

Status check_sizes(const AttentionArgs& args) {
  if (Status status = check_non_negative("batch", args.batch); !status.ok()) return status;
  if (Status status = check_non_negative("seqlen_q", args.seqlen_q); !status.ok()) return status;
  if (Status status = check_non_negative("seqlen_k", args.seqlen_k); !status.ok()) return status;
  if (args.head_dim < 1 || args.head_dim > kMaxHeadDim) {
    return invalid("head_dim", "expected 1.." + std::to_string(kMaxHeadDim) + ", got " +
                                   std::to_string(args.head_dim));
  }
  if (args.head_dim_v < 0 || args.head_dim_v > kMaxHeadDim) {
    return invalid("head_dim_v", "expected 1.." + std::to_string(kMaxHeadDim) +
                                     " (or 0 for head_dim), got " +
                                     std::to_string(args.head_dim_v));
  }
  if (Status status = check_non_negative("heads_q", args.heads_q); !status.ok()) return status;
  if (args.heads_kv < 1) {
    return invalid("heads_kv", "expected >= 1, got " + std::to_string(args.heads_kv));
  }
  if (args.heads_q % args.heads_kv != 0) {
    return invalid("k", "heads " + std::to_string(args.heads_kv) + " does not divide q heads " +
                            std::to_string(args.heads_q));
  }
  return Status::Ok();
}

Status check_support(const AttentionArgs& args) {
  const std::string backend = to_string(args.backend);
  if (args.device == Device::cuda && is_cpu_backend(args.backend)) {
    return unsupported("backend", backend + " cannot run on device cuda");
  }
  if (args.device == Device::cpu && is_cuda_backend(args.backend)) {
    return unsupported("backend", backend + " cannot run on device cpu");
  }
  if (args.device == Device::cuda && args.dtype == DType::fp32) {
    return unsupported("dtype",
                       "expected fp16 or bf16 on device cuda (fp32 runs on cpu), got fp32");
  }
  return Status::Ok();
}

}  // namespace flashattn::detail
