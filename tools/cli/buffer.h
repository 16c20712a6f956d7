// Owned memory on the CPU or the GPU, and copies between it and the host.
#pragma once

#include <cstddef>

#include "flashattn/types.h"

namespace flashattn::cli {

// A block of `bytes` on `device`. Failures (no memory, CUDA errors) throw std::runtime_error.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Device device, size_t bytes);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

  // Copies bytes() bytes from host memory into this buffer.
  void upload(const void* host);
  // A copy of this buffer in host memory.
  Buffer to_host() const;

 private:
  void release();

  Device device_ = Device::cpu;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Waits for all GPU work (no-op on the CPU); throws on a CUDA error.
void synchronize(Device device);

}  // namespace flashattn::cli
