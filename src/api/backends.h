// Entry points of every backend, as the dispatcher in src/api sees them.
//
// Backends receive params that src/api has already validated and normalised:
//  - softmax_scale is a number (never NaN), head_dim_v is set (never 0);
//  - window_left / window_right are the effective window (causal folded in: right = 0),
//    causal still tells whether the caller asked for causal;
//  - lse strides are explicit (never the 0 = contiguous shorthand) when lse.data is set;
//  - sizes are non-negative and their products fit in int64.
// Backends never call each other.
#pragma once

#include <cstddef>
#include <string>

#include "flashattn/params.h"
#include "flashattn/types.h"

namespace flashattn {

namespace cpu_reference {
// Supports every valid problem on Device::cpu (O(seqlen_q * seqlen_k) memory per head).
Status forward(const ForwardParams& params);
Status backward(const BackwardParams& params);
}  // namespace cpu_reference

namespace cpu_tiled {
// Returns an empty string when supported, otherwise the reason.
std::string unsupported_reason(const ForwardParams& params);
std::string unsupported_reason(const BackwardParams& params);
Status forward(const ForwardParams& params);
Status backward(const BackwardParams& params);
}  // namespace cpu_tiled

#if defined(FLASHATTN_WITH_CUDA)
namespace cuda_sm80 {
std::string unsupported_reason(const ForwardParams& params);
std::string unsupported_reason(const BackwardParams& params);
Status forward(const ForwardParams& params);
Status backward(const BackwardParams& params);
Status backward_workspace_size(const BackwardParams& params, size_t* bytes);
}  // namespace cuda_sm80
#endif

}  // namespace flashattn
