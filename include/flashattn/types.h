// Basic vocabulary of the public API: element types, devices, backends and Status.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

namespace flashattn {

// Element type of q, k, v, out and the gradients. LSE and accumulation are always fp32.
enum class DType : int32_t { fp16 = 0, bf16 = 1, fp32 = 2 };

// Where the tensors live. The library never guesses from pointers.
enum class Device : int32_t { cpu = 0, cuda = 1 };

// Which implementation runs. `automatic` picks the best one that supports the problem
// on the given device; naming one explicitly fails with `unsupported` if it cannot run it.
enum class Backend : int32_t {
  automatic = 0,
  cpu_reference = 1,  // naive fp64 algorithm: the oracle, O(seqlen_q * seqlen_k) memory
  cpu_tiled = 2,      // FlashAttention-2 on the CPU: tiles, online softmax, OpenMP
  cuda_sm80 = 3,      // FlashAttention-2 kernels on mma.sync (sm80, sm86, sm89, sm90)
  cuda_sm90 = 4,      // Hopper kernels (wgmma, TMA)
};

enum class StatusCode : int32_t {
  ok = 0,
  invalid_argument = 1,  // the caller passed something the contract forbids
  unsupported = 2,       // valid, but no backend (or not the requested one) can run it
  cuda_error = 3,        // a CUDA runtime call or launch failed
  out_of_memory = 4,
  internal = 5,
};

// Result of every API call. Messages name the argument, the expected and the actual value,
// e.g. "k: heads 6 does not divide q heads 32".
class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status InvalidArgument(std::string message) {
    return {StatusCode::invalid_argument, std::move(message)};
  }
  static Status Unsupported(std::string message) {
    return {StatusCode::unsupported, std::move(message)};
  }

  bool ok() const { return code_ == StatusCode::ok; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::ok;
  std::string message_;
};

const char* to_string(DType dtype);
const char* to_string(Device device);
const char* to_string(Backend backend);
const char* to_string(StatusCode code);

// Size in bytes of one element of `dtype`.
constexpr int64_t element_size(DType dtype) { return dtype == DType::fp32 ? 4 : 2; }

}  // namespace flashattn
