// Pieces shared by every validation check: message formatting and overflow-checked int64
// arithmetic, so that all errors read alike ("<argument>: expected <x>, got <y>").
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>

#include "flashattn/types.h"

namespace flashattn::detail {

inline Status invalid(const std::string& argument, const std::string& detail) {
  return Status::InvalidArgument(argument + ": " + detail);
}

inline Status unsupported(const std::string& argument, const std::string& detail) {
  return Status::Unsupported(argument + ": " + detail);
}

// "[2, 128, 8, 64]": shapes and stride lists in messages.
inline std::string format_list(std::initializer_list<int64_t> values) {
  std::string text = "[";
  bool first = true;
  for (const int64_t value : values) {
    if (!first) text += ", ";
    text += std::to_string(value);
    first = false;
  }
  return text + "]";
}

// Shortest readable form of a float option ("1.5", "nan", "inf", "-0.25").
inline std::string format_float(float value) {
  if (std::isnan(value)) return "nan";
  char text[32];
  std::snprintf(text, sizeof(text), "%g", static_cast<double>(value));
  return text;
}

// "expected >= 0, got -3" for the common case of a size that must not be negative.
inline Status check_non_negative(const std::string& argument, int64_t value) {
  if (value >= 0) return Status::Ok();
  return invalid(argument, "expected >= 0, got " + std::to_string(value));
}

// a * b and a + b in int64; false (and *result unspecified) on overflow.
inline bool checked_mul(int64_t a, int64_t b, int64_t* result) {
  return !__builtin_mul_overflow(a, b, result);
}
inline bool checked_add(int64_t a, int64_t b, int64_t* result) {
  return !__builtin_add_overflow(a, b, result);
}

// Product of non-negative extents; false on overflow. A zero extent makes the product 0
// whatever the others are, so an empty tensor never "overflows".
inline bool checked_product(std::initializer_list<int64_t> extents, int64_t* result) {
  for (const int64_t extent : extents) {
    if (extent == 0) {
      *result = 0;
      return true;
    }
  }
  int64_t product = 1;
  for (const int64_t extent : extents) {
    if (!checked_mul(product, extent, &product)) return false;
  }
  *result = product;
  return true;
}

}  // namespace flashattn::detail
