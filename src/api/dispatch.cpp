// The public entry points: validate, fill defaults, choose a backend, run it.
#include <string>

#include "api/backends.h"
#include "api/normalize.h"
#include "api/validation.h"
#include "flashattn/flashattn.h"

#if defined(FLASHATTN_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace flashattn {
namespace {

template <typename Params>
std::string reason_cpu_tiled(const Params& params) {
  return cpu_tiled::unsupported_reason(params);
}

#if defined(FLASHATTN_WITH_CUDA)
template <typename Params>
std::string reason_cuda_sm80(const Params& params) {
  return cuda_sm80::unsupported_reason(params);
}
#endif

// Picks the backend for normalised params; `Backend::automatic` means "best available".
template <typename Params>
Status choose_backend(const Params& params, Backend* chosen) {
  const Backend requested = params.backend;
  if (params.device == Device::cpu) {
    if (requested == Backend::cpu_reference) {
      *chosen = Backend::cpu_reference;
      return Status::Ok();
    }
    if (requested != Backend::automatic && requested != Backend::cpu_tiled) {
      return Status::Unsupported(std::string("backend: ") + to_string(requested) +
                                 " cannot run on device cpu");
    }
    const std::string why = reason_cpu_tiled(params);
    if (why.empty()) {
      *chosen = Backend::cpu_tiled;
      return Status::Ok();
    }
    if (requested == Backend::cpu_tiled) return Status::Unsupported("backend cpu_tiled: " + why);
    *chosen = Backend::cpu_reference;  // the reference runs every valid problem
    return Status::Ok();
  }
#if defined(FLASHATTN_WITH_CUDA)
  if (requested != Backend::automatic && requested != Backend::cuda_sm80) {
    return Status::Unsupported(std::string("backend: ") + to_string(requested) +
                               " is not available for device cuda in this build");
  }
  const std::string why = reason_cuda_sm80(params);
  if (!why.empty()) return Status::Unsupported("backend cuda_sm80: " + why);
  *chosen = Backend::cuda_sm80;
  return Status::Ok();
#else
  return Status::Unsupported("device: cuda requested but this build has no CUDA backend "
                             "(configure with FLASHATTN_CUDA=ON)");
#endif
}

ForwardParams normalized(const ForwardParams& params) {
  ForwardParams resolved = params;
  detail::normalize_args(resolved);
  if (resolved.lse.data != nullptr) detail::normalize_lse(resolved, resolved.lse);
  return resolved;
}

BackwardParams normalized(const BackwardParams& params) {
  BackwardParams resolved = params;
  detail::normalize_args(resolved);
  detail::normalize_lse(resolved, resolved.lse);
  return resolved;
}

}  // namespace

Status validate(const ForwardParams& params) { return detail::validate_forward_args(params); }
Status validate(const BackwardParams& params) { return detail::validate_backward_args(params); }

Status select_backend(const ForwardParams& params, Backend* chosen) {
  if (Status status = validate(params); !status.ok()) return status;
  return choose_backend(normalized(params), chosen);
}

Status select_backend(const BackwardParams& params, Backend* chosen) {
  if (Status status = validate(params); !status.ok()) return status;
  return choose_backend(normalized(params), chosen);
}

Status forward(const ForwardParams& params) {
  if (Status status = validate(params); !status.ok()) return status;
  const ForwardParams resolved = normalized(params);
  Backend backend = Backend::automatic;
  if (Status status = choose_backend(resolved, &backend); !status.ok()) return status;
  switch (backend) {
    case Backend::cpu_reference: return cpu_reference::forward(resolved);
    case Backend::cpu_tiled: return cpu_tiled::forward(resolved);
#if defined(FLASHATTN_WITH_CUDA)
    case Backend::cuda_sm80: return cuda_sm80::forward(resolved);
#endif
    default: break;
  }
  return {StatusCode::internal, std::string("no entry point for backend ") + to_string(backend)};
}

Status backward(const BackwardParams& params) {
  if (Status status = validate(params); !status.ok()) return status;
  const BackwardParams resolved = normalized(params);
  Backend backend = Backend::automatic;
  if (Status status = choose_backend(resolved, &backend); !status.ok()) return status;
  switch (backend) {
    case Backend::cpu_reference: return cpu_reference::backward(resolved);
    case Backend::cpu_tiled: return cpu_tiled::backward(resolved);
#if defined(FLASHATTN_WITH_CUDA)
    case Backend::cuda_sm80: return cuda_sm80::backward(resolved);
#endif
    default: break;
  }
  return {StatusCode::internal, std::string("no entry point for backend ") + to_string(backend)};
}

Status backward_workspace_size(const BackwardParams& params, size_t* bytes) {
  if (Status status = validate(params); !status.ok()) return status;
  const BackwardParams resolved = normalized(params);
  Backend backend = Backend::automatic;
  if (Status status = choose_backend(resolved, &backend); !status.ok()) return status;
#if defined(FLASHATTN_WITH_CUDA)
  if (backend == Backend::cuda_sm80) return cuda_sm80::backward_workspace_size(resolved, bytes);
#endif
  *bytes = 0;  // the CPU backends allocate their per-thread scratch themselves
  return Status::Ok();
}

bool cuda_available() {
#if defined(FLASHATTN_WITH_CUDA)
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
#else
  return false;
#endif
}

}  // namespace flashattn
