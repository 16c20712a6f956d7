// Scalar fp16 / bf16 <-> float conversions (round to nearest even) for the CPU backends.
#pragma once

#include <cstdint>
#include <cstring>

#include "flashattn/types.h"

namespace flashattn::cpu {

inline float bf16_to_float(uint16_t bits) {
  const uint32_t widened = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &widened, sizeof(value));
  return value;
}

inline uint16_t float_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

inline float fp16_to_float(uint16_t bits) {
  _Float16 half;
  std::memcpy(&half, &bits, sizeof(half));
  return static_cast<float>(half);
}

inline uint16_t float_to_fp16(float value) {
  const _Float16 half = static_cast<_Float16>(value);  // IEEE round to nearest even
  uint16_t bits;
  std::memcpy(&bits, &half, sizeof(bits));
  return bits;
}

// Loads element `index` of a buffer of `dtype` as float.
inline float load_as_float(const void* data, int64_t index, DType dtype) {
  switch (dtype) {
    case DType::fp32: return static_cast<const float*>(data)[index];
    case DType::bf16: return bf16_to_float(static_cast<const uint16_t*>(data)[index]);
    case DType::fp16: return fp16_to_float(static_cast<const uint16_t*>(data)[index]);
  }
  return 0.0f;
}

// Stores `value` rounded to `dtype` at element `index`.
inline void store_from_float(void* data, int64_t index, DType dtype, float value) {
  switch (dtype) {
    case DType::fp32: static_cast<float*>(data)[index] = value; return;
    case DType::bf16: static_cast<uint16_t*>(data)[index] = float_to_bf16(value); return;
    case DType::fp16: static_cast<uint16_t*>(data)[index] = float_to_fp16(value); return;
  }
}

// Rounds a float to the nearest value representable in `dtype` (identity for fp32).
inline float round_to(DType dtype, float value) {
  switch (dtype) {
    case DType::fp32: return value;
    case DType::bf16: return bf16_to_float(float_to_bf16(value));
    case DType::fp16: return fp16_to_float(float_to_fp16(value));
  }
  return value;
}

}  // namespace flashattn::cpu
