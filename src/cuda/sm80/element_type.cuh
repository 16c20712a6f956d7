// What every sm80 kernel instance needs on the host side of its launch: the CUDA element type
// of a DType and the one-time raise of a kernel's dynamic shared-memory limit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "flashattn/types.h"

namespace flashattn::cuda_sm80 {

template <DType kDType>
struct ElementOf;
template <>
struct ElementOf<DType::fp16> {
  using type = __half;
};
template <>
struct ElementOf<DType::bf16> {
  using type = __nv_bfloat16;
};

// The shared-memory limit is a per-device function attribute: raise it once per device
// (raised_on_devices: one bit per device, owned by the caller's instance).
inline Status raise_smem_limit(const void* kernel, int bytes, std::atomic<uint64_t>& raised_on_devices,
                               const char* who) {
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

}  // namespace flashattn::cuda_sm80
