// The CUDA element type of a DType, for the kernel instances.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "flashattn/types.h"

namespace flashattn::cuda_sm80 {

template <DType kDType>
struct ElementOf;
template <>
struct ElementOf<DType::fp16> {
  using type = __half;
};
template <>
struct ElementOf<DType::bf16> {
  using type = __nv_bfloat16;
};

}  // namespace flashattn::cuda_sm80
