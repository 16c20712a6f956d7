// Shared memory per block on the host side of a launch: how much the current device offers
// (so a kernel can take the tile configuration that fits, or fail by name), the one-time raise
// of a kernel's dynamic shared-memory limit, and the launch that goes with it.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cuda/sm80/dependent_launch.cuh"
#include "flashattn/types.h"

namespace flashattn::cuda_sm80 {

// FLASHATTN_CUDA_SMEM_LIMIT=<bytes> caps the budget below the device's own limit: one GPU then
// runs the configurations a smaller one would (bench/gpu.sh tests sm80's and sm86's this way).
inline int shared_memory_cap_from_environment() {
  const char* text = std::getenv("FLASHATTN_CUDA_SMEM_LIMIT");
  if (text == nullptr || *text == '\0') return 0;
  char* end = nullptr;
  const long bytes = std::strtol(text, &end, 10);
  return *end == '\0' && bytes > 0 ? static_cast<int>(std::min(bytes, long{1} << 30)) : 0;
}

// Shared memory the hardware sets aside per resident block (sm80 and newer), out of the SM's.
inline constexpr int kReservedSharedMemoryPerBlock = 1024;

// Dynamic shared memory one block may opt into on the current device (227 KB on sm90, 163 KB
// on sm80, 99 KB on sm86 / sm89) and, when per_sm is given, the SM's whole (228 / 164 / 100 KB:
// how many blocks fit side by side), both capped by FLASHATTN_CUDA_SMEM_LIMIT when that is set
// (the SM's at the cap plus one block's reserve, as on the devices the caps stand for).
inline Status shared_memory_budget(int* bytes, int* per_sm = nullptr) {
  int device = 0;
  cudaError_t error = cudaGetDevice(&device);
  if (error == cudaSuccess) {
    error = cudaDeviceGetAttribute(bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  }
  if (error == cudaSuccess && per_sm != nullptr) {
    error = cudaDeviceGetAttribute(per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device);
  }
  if (error != cudaSuccess) {
    return {StatusCode::cuda_error,
            std::string("cuda: reading the device's shared-memory limit: ") +
                cudaGetErrorString(error)};
  }
  static const int cap = shared_memory_cap_from_environment();
  if (cap > 0) {
    *bytes = std::min(*bytes, cap);
    if (per_sm != nullptr) *per_sm = std::min(*per_sm, cap + kReservedSharedMemoryPerBlock);
  }
  return Status::Ok();
}

// `unsupported`, naming the need and the offer, when a kernel's tiles do not fit the budget.
inline Status check_shared_memory(int needed, int budget, int width, const char* who) {
  if (needed <= budget) return Status::Ok();
  return {StatusCode::unsupported,
          std::string(who) + ": head-dim width " + std::to_string(width) + " needs " +
              std::to_string(needed) + " bytes of shared memory per block; this device offers " +
              std::to_string(budget) + " (head_dim too large for this GPU)"};
}

// The shared-memory limit is a per-device function attribute: raise it once per device
// (raised_on_devices: one bit per device, owned by the caller's instance).
inline Status raise_smem_limit(const void* kernel, int bytes,
                               std::atomic<uint64_t>& raised_on_devices, const char* who) {
  int device = 0;
  cudaError_t error = cudaGetDevice(&device);
  const uint64_t device_bit = device < 64 ? uint64_t{1} << device : 0;
  if (error == cudaSuccess && (raised_on_devices.load() & device_bit) == 0) {
    error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (error == cudaSuccess) raised_on_devices.fetch_or(device_bit);
  }
  if (error != cudaSuccess) {
    return {StatusCode::cuda_error, std::string(who) + ": cudaFuncSetAttribute(" +
                                        std::to_string(bytes) +
                                        " bytes of shared memory): " + cudaGetErrorString(error)};
  }
  return Status::Ok();
}

// Launches kKernel(args) with smem_bytes of dynamic shared memory, raising its limit first
// (once per device and kernel instance); a launch error comes back as a Status naming `who`.
// after_previous: as a programmatic dependent of the stream's previous kernel where enabled
// (launch_after_previous).
template <auto kKernel, typename Args>
Status launch_with_shared_memory(dim3 grid, int threads, int smem_bytes, cudaStream_t stream,
                                 const Args& args, const char* who, bool after_previous = false) {
  static std::atomic<uint64_t> raised_on_devices{0};
  if (Status status = raise_smem_limit(reinterpret_cast<const void*>(kKernel), smem_bytes,
                                       raised_on_devices, who);
      !status.ok()) {
    return status;
  }
  cudaError_t error = cudaSuccess;
  if (after_previous) {
    error = launch_after_previous(kKernel, grid, threads, static_cast<size_t>(smem_bytes), stream,
                                  args);
  } else {
    kKernel<<<grid, threads, smem_bytes, stream>>>(args);
    error = cudaGetLastError();
  }
  if (error != cudaSuccess) {
    return {StatusCode::cuda_error,
            std::string(who) + ": kernel launch failed: " + cudaGetErrorString(error)};
  }
  return Status::Ok();
}

}  // namespace flashattn::cuda_sm80
