// Strided gathers and scatters between the caller's tensors and the fp32 working buffers.
#include "cpu/tiled/operands.h"

#include <algorithm>
#include <cstring>
#include <vector>

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
  if (source.problem->args->dtype == DType::fp32) {
    for (int64_t r = 0; r < count; ++r) {
      std::memcpy(dst + r * ld, static_cast<const float*>(base) + source.offset(row0 + r),
                  static_cast<size_t>(source.dim) * sizeof(float));
    }
    return;
  }
  with_loader(source.problem->args->dtype, [&](auto load) {
    for (int64_t r = 0; r < count; ++r) {
      const int64_t offset = source.offset(row0 + r);
      float* out = dst + r * ld;
      for (int64_t d = 0; d < source.dim; ++d) out[d] = load(base, offset + d);
    }
  });
}

// Per key tile, dims outermost: the writes run along the contiguous tile rows and the reads
// revisit the same kKeyTile input rows, which stay in L1.
void gather_transposed_tiles(const HeadRows& source, int64_t count, float* dst) {
  const void* base = source.ref->data;
  const int64_t dim = source.dim;
  std::vector<int64_t> offsets(static_cast<size_t>(kKeyTile));
  with_loader(source.problem->args->dtype, [&](auto load) {
    for (int64_t key0 = 0; key0 < count; key0 += kKeyTile) {
      const int64_t keys = std::min(kKeyTile, count - key0);
      for (int64_t c = 0; c < keys; ++c) offsets[static_cast<size_t>(c)] = source.offset(key0 + c);
      float* tile = dst + key0 * dim;  // tile key0 / kKeyTile: dim * kKeyTile floats
      for (int64_t d = 0; d < dim; ++d) {
        float* tile_row = tile + d * kKeyTile;
        for (int64_t c = 0; c < keys; ++c) {
          tile_row[c] = load(base, offsets[static_cast<size_t>(c)] + d);
        }
        std::fill(tile_row + keys, tile_row + kKeyTile, 0.0f);
      }
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
