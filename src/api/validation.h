// Argument checks run before any work: each failure names the argument, expected and actual.
#pragma once

#include "flashattn/params.h"
#include "flashattn/types.h"

namespace flashattn::detail {

// Checks everything the contract requires of a forward call (DESIGN.md, issue 3 list).
Status validate_forward_args(const ForwardParams& params);
// Same for backward: the forward's arguments plus out, dout, lse, dq, dk, dv.
Status validate_backward_args(const BackwardParams& params);

}  // namespace flashattn::detail
