// flashattn public API: exact, IO-aware attention (forward and backward) on CPU and CUDA.
#pragma once

#include "flashattn/params.h"
#include "flashattn/types.h"

namespace flashattn {

// Validates every argument, fills defaults, picks a backend and runs the forward pass.
// On any error nothing is written to the outputs and the returned Status says why.
Status forward(const ForwardParams& params);

// Gradients dq, dk, dv of the forward described by the same arguments.
Status backward(const BackwardParams& params);

// Argument checks alone (what forward/backward do first); no work, no writes.
Status validate(const ForwardParams& params);
Status validate(const BackwardParams& params);

// The backend that forward/backward would run for these params (after validation).
Status select_backend(const ForwardParams& params, Backend* chosen);
Status select_backend(const BackwardParams& params, Backend* chosen);

// Scratch bytes the backward needs on params.device for these params.
Status backward_workspace_size(const BackwardParams& params, size_t* bytes);

// Whether this build contains CUDA kernels and a usable GPU is present.
bool cuda_available();

// Library version, "major.minor.patch".
const char* version();

}  // namespace flashattn
