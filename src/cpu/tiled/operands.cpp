// Strided gathers and scatters between the caller's tensors and the fp32 working buffers.
#include "cpu/tiled/operands.h"

#include <algorithm>

#include "cpu/element.h"

namespace flashattn::cpu_tiled {
namespace {

// The dtype switch sits outside the element loops so that each loop is a plain conversion.
template <typename Body>
void with_loader(DType dtype, Body&& body) {
  switch (dtype) {
    case DType::fp32:
      body([](const void* p, int64_t i) { return static_cast<const float*>(p)[i]; });
      return;
    case DType::bf16:
      body([](const void* p, int64_t i) {
        return cpu::bf16_to_float(static_cast<const uint16_t*>(p)[i]);
      });
      return;
    case DType::fp16:
      body([](const void* p, int64_t i) {
        return cpu::fp16_to_float(static_cast<const uint16_t*>(p)[i]);
      });
      return;
  }
}

template <typename Body>
void with_storer(DType dtype, Body&& body) {
  switch (dtype) {
    case DType::fp32:
      body([](void* p, int64_t i, float x) { static_cast<float*>(p)[i] = x; });
      return;
    case DType::bf16:
      body([](void* p, int64_t i, float x) {
        static_cast<uint16_t*>(p)[i] = cpu::float_to_bf16(x);
      });
      return;
    case DType::fp16:
      body([](void* p, int64_t i, float x) {
        static_cast<uint16_t*>(p)[i] = cpu::float_to_fp16(x);
      });
      return;
  }
}

}  // namespace

void gather_rows(const HeadRows& source, int64_t row0, int64_t count, float* dst, int64_t ld) {
  const void* base = source.ref->data;
  with_loader(source.problem->args->dtype, [&](auto load) {
    for (int64_t r = 0; r < count; ++r) {
      const int64_t offset = source.offset(row0 + r);
      float* out = dst + r * ld;
      for (int64_t d = 0; d < source.dim; ++d) out[d] = load(base, offset + d);
    }
  });
}

void gather_transposed_tiles(const HeadRows& source, int64_t count, float* dst) {
  const int64_t tiles = (count + kKeyTile - 1) / kKeyTile;
  std::fill(dst, dst + tiles * source.dim * kKeyTile, 0.0f);
  const void* base = source.ref->data;
  with_loader(source.problem->args->dtype, [&](auto load) {
    for (int64_t key = 0; key < count; ++key) {
      const int64_t offset = source.offset(key);
      float* column = dst + (key / kKeyTile) * source.dim * kKeyTile + key % kKeyTile;
      for (int64_t d = 0; d < source.dim; ++d) column[d * kKeyTile] = load(base, offset + d);
    }
  });
}

void scatter_rows(const HeadRows& target, int64_t row0, int64_t count, const float* src,
                  int64_t ld) {
  void* base = target.ref->data;
  with_storer(target.problem->args->dtype, [&](auto store) {
    for (int64_t r = 0; r < count; ++r) {
      const int64_t offset = target.offset(row0 + r);
      const float* in = src + r * ld;
      for (int64_t d = 0; d < target.dim; ++d) store(base, offset + d, in[d]);
    }
  });
}

void zero_rows(const HeadRows& target, int64_t row0, int64_t count) {
  void* base = target.ref->data;
  with_storer(target.problem->args->dtype, [&](auto store) {
    for (int64_t r = 0; r < count; ++r) {
      const int64_t offset = target.offset(row0 + r);
      for (int64_t d = 0; d < target.dim; ++d) store(base, offset + d, 0.0f);
    }
  });
}

}  // namespace flashattn::cpu_tiled
