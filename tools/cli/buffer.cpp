// Owned memory on the CPU or the GPU, and copies between it and the host.
#include "buffer.h"

#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#if defined(FLASHATTN_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace flashattn::cli {
namespace {

constexpr std::align_val_t kHostAlignment{64};

#if defined(FLASHATTN_WITH_CUDA)
void check_cuda(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(error));
  }
}
#else
[[noreturn]] void no_cuda() {
  throw std::runtime_error("device cuda: this flashattn was built without CUDA");
}
#endif

}  // namespace

Buffer::Buffer(Device device, size_t bytes) : device_(device), bytes_(bytes) {
  const size_t allocated = bytes > 0 ? bytes : 1;  // a valid pointer even for empty tensors
  if (device == Device::cpu) {
    data_ = ::operator new(allocated, kHostAlignment, std::nothrow);
    if (data_ == nullptr) {
      throw std::runtime_error("out of host memory allocating " + std::to_string(bytes) + " bytes");
    }
    return;
  }
#if defined(FLASHATTN_WITH_CUDA)
  check_cuda(cudaMalloc(&data_, allocated), "cudaMalloc");
#else
  no_cuda();
#endif
}

Buffer::~Buffer() {
  release();
}

Buffer::Buffer(Buffer&& other) noexcept
    : device_(other.device_),
      data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    device_ = other.device_;
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void Buffer::release() {
  if (data_ == nullptr) return;
  if (device_ == Device::cpu) {
    ::operator delete(data_, kHostAlignment);
  } else {
#if defined(FLASHATTN_WITH_CUDA)
    cudaFree(data_);
#endif
  }
  data_ = nullptr;
}

void Buffer::upload(const void* host) {
  if (bytes_ == 0) return;
  if (device_ == Device::cpu) {
    std::memcpy(data_, host, bytes_);
    return;
  }
#if defined(FLASHATTN_WITH_CUDA)
  check_cuda(cudaMemcpy(data_, host, bytes_, cudaMemcpyHostToDevice), "cudaMemcpy to device");
#else
  no_cuda();
#endif
}

Buffer Buffer::to_host() const {
  Buffer host(Device::cpu, bytes_);
  if (bytes_ == 0) return host;
  if (device_ == Device::cpu) {
    std::memcpy(host.data(), data_, bytes_);
    return host;
  }
#if defined(FLASHATTN_WITH_CUDA)
  check_cuda(cudaMemcpy(host.data(), data_, bytes_, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
#else
  no_cuda();
#endif
  return host;
}

void synchronize(Device device) {
  if (device == Device::cpu) return;
#if defined(FLASHATTN_WITH_CUDA)
  check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
#else
  no_cuda();
#endif
}

}  // namespace flashattn::cli
