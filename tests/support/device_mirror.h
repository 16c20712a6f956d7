// DeviceMirror (CUDA device copies of every buffer of a HostProblem) and the skip / assert
// macros of the tests/cuda suites. Header-only and CUDA-only: include it from tests built with
// FLASHATTN_WITH_CUDA.
#pragma once

#if !defined(FLASHATTN_WITH_CUDA)
#error "support/device_mirror.h is for tests built with FLASHATTN_WITH_CUDA"
#endif

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "flashattn/flashattn.h"
#include "flashattn/params.h"
#include "support/host_problem.h"

// Every CUDA test starts with this: without a device it skips (with a message) instead of
// failing.
#define SKIP_WITHOUT_GPU()                                                      \
  do {                                                                          \
    if (!flashattn::cuda_available()) GTEST_SKIP() << "no CUDA device present"; \
  } while (0)

#define CUDA_ASSERT(call)                                                          \
  do {                                                                             \
    const cudaError_t error_ = (call);                                             \
    ASSERT_EQ(error_, cudaSuccess) << #call << ": " << cudaGetErrorString(error_); \
  } while (0)

namespace flashattn::testing {

// A CUDA call the test skips rather than fails: `unsupported` for a build narrowed by
// FLASHATTN_HDIMS / _DTYPES, or for a head dim whose tiles do not fit the shared memory this
// GPU offers (sm86 / sm89, or a FLASHATTN_CUDA_SMEM_LIMIT cap). The skip message says which.
inline bool unsupported_here(const Status& status) {
  return status.code() == StatusCode::unsupported &&
         (status.message().find("in this build") != std::string::npos ||
          status.message().find("bytes of shared memory per block") != std::string::npos);
}

// A CUDA call that must succeed, or skips the test where unsupported_here (the case tables'
// calls, and the tests written for one head dim).
#define ASSERT_OK_OR_SKIP(call)                                      \
  do {                                                               \
    const ::flashattn::Status status_ = (call);                      \
    if (::flashattn::testing::unsupported_here(status_)) {           \
      GTEST_SKIP() << status_.message();                             \
    }                                                                \
    ASSERT_TRUE(status_.ok()) << #call << ": " << status_.message(); \
  } while (0)

// Device copies of every buffer of a HostProblem (inputs and the poisoned outputs).
class DeviceMirror {
 public:
  explicit DeviceMirror(HostProblem& problem) : problem_(problem) {
    for (int id = 0; id < kBufferCount; ++id) {
      const std::span<std::byte> host = problem.bytes(static_cast<BufferId>(id));
      if (host.empty()) continue;
      if (cudaMalloc(&device_[id], host.size()) != cudaSuccess) {
        device_[id] = nullptr;
        ok_ = false;
        continue;
      }
      ok_ = ok_ && cudaMemcpy(device_[id], host.data(), host.size(), cudaMemcpyHostToDevice) ==
                       cudaSuccess;
    }
  }
  ~DeviceMirror() {
    for (void* pointer : device_) cudaFree(pointer);
  }
  DeviceMirror(const DeviceMirror&) = delete;
  DeviceMirror& operator=(const DeviceMirror&) = delete;

  bool ok() const { return ok_; }
  const BufferPointers& pointers() const { return device_; }
  ForwardParams forward_params() const { return problem_.forward_params_at(device_, Device::cuda); }
  BackwardParams backward_params() const {
    return problem_.backward_params_at(device_, Device::cuda);
  }
  // Copies every output buffer back into the host problem.
  bool copy_outputs_back() {
    for (int id = 0; id < kBufferCount; ++id) {
      if (device_[id] == nullptr || !is_output(static_cast<BufferId>(id))) continue;
      const std::span<std::byte> host = problem_.bytes(static_cast<BufferId>(id));
      if (cudaMemcpy(host.data(), device_[id], host.size(), cudaMemcpyDeviceToHost) !=
          cudaSuccess) {
        return false;
      }
    }
    return true;
  }
  // The device bytes of one buffer (e.g. to compare two runs bit for bit).
  std::vector<std::byte> download(BufferId id) const {
    std::vector<std::byte> bytes(problem_.bytes(id).size());
    const void* source = device_[static_cast<int>(id)];
    if (source != nullptr &&
        cudaMemcpy(bytes.data(), source, bytes.size(), cudaMemcpyDeviceToHost) != cudaSuccess) {
      bytes.clear();
    }
    return bytes;
  }
  // Refills dq, dk, dv on the device (and on the host) with the poison pattern.
  bool poison_gradients() {
    problem_.poison_gradients();
    for (BufferId id : {BufferId::dq, BufferId::dk, BufferId::dv}) {
      void* pointer = device_[static_cast<int>(id)];
      if (pointer == nullptr) continue;
      if (cudaMemset(pointer, static_cast<int>(kPoisonByte), problem_.bytes(id).size()) !=
          cudaSuccess) {
        return false;
      }
    }
    return true;
  }

 private:
  HostProblem& problem_;
  BufferPointers device_{};
  bool ok_ = true;
};

}  // namespace flashattn::testing
