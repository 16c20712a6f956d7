// Problem + Tensors -> the library's ForwardParams / BackwardParams.
#pragma once

#include "flashattn/params.h"
#include "problem.h"
#include "tensors.h"

namespace flashattn::cli {

// The params describe `tensors` on the device they live on (host copies give CPU params).
ForwardParams forward_params(const Problem& problem, const Tensors& tensors);
BackwardParams backward_params(const Problem& problem, const Tensors& tensors);

}  // namespace flashattn::cli
