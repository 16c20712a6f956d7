// The operands of one problem: allocation on its device, random inputs, NaN-poisoned outputs.
#include "tensors.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "cpu/element.h"

namespace flashattn::cli {
namespace {

// Inputs are filled in fixed chunks, each with its own generator, so the values depend only
// on the seed (never on the thread count) and the fill runs in parallel.
constexpr int64_t kFillChunk = int64_t{1} << 16;

Buffer random_normal(const Problem& problem, int64_t elements, uint64_t stream) {
  Buffer host(Device::cpu, static_cast<size_t>(elements * element_size(problem.dtype)));
  const int64_t chunks = (elements + kFillChunk - 1) / kFillChunk;
#pragma omp parallel for schedule(static)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    std::seed_seq seeds{static_cast<uint32_t>(problem.seed),
                        static_cast<uint32_t>(problem.seed >> 32), static_cast<uint32_t>(stream),
                        static_cast<uint32_t>(chunk)};
    std::mt19937_64 generator(seeds);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const int64_t end = std::min(elements, (chunk + 1) * kFillChunk);
    for (int64_t i = chunk * kFillChunk; i < end; ++i) {
      cpu::store_from_float(host.data(), i, problem.dtype, normal(generator));
    }
  }
  Buffer buffer(problem.device, host.bytes());
  buffer.upload(host.data());
  return buffer;
}

Buffer nan_filled(Device device, DType dtype, int64_t elements) {
  Buffer host(Device::cpu, static_cast<size_t>(elements * element_size(dtype)));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t i = 0; i < elements; ++i) cpu::store_from_float(host.data(), i, dtype, nan);
  Buffer buffer(device, host.bytes());
  buffer.upload(host.data());
  return buffer;
}

template <typename T>
Buffer from_vector(Device device, const std::vector<T>& values) {
  Buffer buffer(device, values.size() * sizeof(T));
  buffer.upload(values.data());
  return buffer;
}

// The slopes of the ALiBi paper: a geometric sequence 2^(-8/n), 2^(-16/n), ... for n a power
// of two; other head counts take the nearest lower power and interleave the next one's.
std::vector<float> alibi_slopes(int64_t heads) {
  int64_t power = 1;
  while (power * 2 <= heads) power *= 2;
  std::vector<float> slopes;
  const double base = std::pow(2.0, -8.0 / static_cast<double>(power));
  for (int64_t h = 0; h < power; ++h) slopes.push_back(static_cast<float>(std::pow(base, h + 1)));
  const double extra_base = std::pow(2.0, -4.0 / static_cast<double>(power));
  for (int64_t h = 0; static_cast<int64_t>(slopes.size()) < heads; ++h) {
    slopes.push_back(static_cast<float>(std::pow(extra_base, 2 * h + 1)));
  }
  return slopes;
}

std::vector<int32_t> prefix_sums(const Problem& problem, bool keys) {
  std::vector<int32_t> sums{0};
  for (const SequenceLengths& lengths : problem.sequences) {
    sums.push_back(sums.back() + static_cast<int32_t>(keys ? lengths.k : lengths.q));
  }
  return sums;
}

}  // namespace

Tensors make_tensors(const Problem& problem) {
  const int64_t rows_q = problem.total_q();
  const int64_t rows_k = problem.total_k();
  const int64_t q_elements = rows_q * problem.heads_q * problem.head_dim;
  const int64_t k_elements = rows_k * problem.heads_kv * problem.head_dim;
  const int64_t v_elements = rows_k * problem.heads_kv * problem.head_dim_v;
  const int64_t out_elements = rows_q * problem.heads_q * problem.head_dim_v;
  const Device device = problem.device;

  Tensors tensors;
  tensors.q = random_normal(problem, q_elements, 0);
  tensors.k = random_normal(problem, k_elements, 1);
  tensors.v = random_normal(problem, v_elements, 2);
  tensors.dout = random_normal(problem, out_elements, 3);
  tensors.out = nan_filled(device, problem.dtype, out_elements);
  tensors.lse = nan_filled(device, DType::fp32, rows_q * problem.heads_q);
  if (problem.run_backward) {
    tensors.dq = nan_filled(device, problem.dtype, q_elements);
    tensors.dk = nan_filled(device, problem.dtype, k_elements);
    tensors.dv = nan_filled(device, problem.dtype, v_elements);
  }
  if (problem.varlen()) {
    tensors.cu_seqlens_q = from_vector(device, prefix_sums(problem, false));
    tensors.cu_seqlens_k = from_vector(device, prefix_sums(problem, true));
  }
  if (problem.alibi) tensors.alibi_slopes = from_vector(device, alibi_slopes(problem.heads_q));
  return tensors;
}

Tensors to_host(const Tensors& tensors) {
  Tensors host;
  for (auto member : {&Tensors::q, &Tensors::k, &Tensors::v, &Tensors::dout, &Tensors::out,
                      &Tensors::lse, &Tensors::dq, &Tensors::dk, &Tensors::dv,
                      &Tensors::cu_seqlens_q, &Tensors::cu_seqlens_k, &Tensors::alibi_slopes}) {
    if ((tensors.*member).data() != nullptr) host.*member = (tensors.*member).to_host();
  }
  return host;
}

}  // namespace flashattn::cli
