// HostProblem: host buffers of one AttentionCase (random inputs, NaN-poisoned outputs) and the
// ForwardParams / BackwardParams that point into them, or into mirrors of them elsewhere.
//
// Device-agnostic on purpose: a CUDA test allocates one device buffer per BufferId with
// bytes(id).size(), copies the host bytes over, runs on
// forward_params_at(device_pointers, Device::cuda), copies the outputs (is_output) back into
// the host buffers and checks them with check_forward / check_backward.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "flashattn/params.h"
#include "support/attention_case.h"

namespace flashattn::testing {

enum class BufferId : int {
  q,
  k,
  v,
  out,
  lse,
  dout,
  dq,
  dk,
  dv,
  cu_seqlens_q,
  cu_seqlens_k,
  seqused_k,
  alibi_slopes,
  dropout_mask,
};
inline constexpr int kBufferCount = static_cast<int>(BufferId::dropout_mask) + 1;

const char* buffer_name(BufferId id);
// Written by forward or backward (to be copied back from a device); the rest are inputs.
bool is_output(BufferId id);

// One base pointer per BufferId (null for buffers the case does not use).
using BufferPointers = std::array<void*, kBufferCount>;

class HostProblem {
 public:
  HostProblem(AttentionCase config, uint64_t seed);

  const AttentionCase& config() const { return config_; }
  uint64_t seed() const { return seed_; }

  // Bytes of one buffer; empty when the case does not use it (e.g. no varlen, no ALiBi).
  std::span<std::byte> bytes(BufferId id) { return buffers_[static_cast<int>(id)]; }
  std::span<const std::byte> bytes(BufferId id) const { return buffers_[static_cast<int>(id)]; }
  BufferPointers host_pointers();

  // Params on the host buffers (device cpu, backend automatic).
  ForwardParams forward_params() { return forward_params_at(host_pointers(), Device::cpu); }
  BackwardParams backward_params() { return backward_params_at(host_pointers(), Device::cpu); }
  // The same params with every pointer taken from `bases` (e.g. device mirrors).
  ForwardParams forward_params_at(const BufferPointers& bases, Device device) const;
  BackwardParams backward_params_at(const BufferPointers& bases, Device device) const;

  // Refills out, lse and the dropout mask (forward) or dq, dk, dv (backward) with the poison
  // pattern (all bytes 0xff: NaN in every dtype, 255 in the mask).
  void poison_forward_outputs();
  void poison_gradients();

  // Whether byte-pattern `element` of buffer `id` is a logical element (not a stride gap).
  // Only for the strided tensors and the LSE.
  std::vector<bool> logical_elements(BufferId id) const;

 private:
  void fill_buffers();

  AttentionCase config_;
  uint64_t seed_;
  std::array<std::vector<std::byte>, kBufferCount> buffers_;
  ForwardParams forward_template_;  // strides and options; pointers null
  BackwardParams backward_template_;
};

inline constexpr std::byte kPoisonByte{0xff};

// Random inputs for `config` drawn from `seed` (different seeds, different values).
HostProblem make_problem(const AttentionCase& config, uint64_t seed);

}  // namespace flashattn::testing
