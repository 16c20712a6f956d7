// Library errors -> a message on stderr that names the flag, and the CLI's exit code.
#pragma once

#include "flashattn/types.h"

namespace flashattn::cli {

// Exit codes: 0 success, 1 a failed --check or a runtime failure, 2 a bad argument.
inline constexpr int kExitCheckFailed = 1;
inline constexpr int kExitRuntimeError = 1;
inline constexpr int kExitBadArgument = 2;

// Prints `status` (not ok) with the flag its argument comes from; returns the exit code:
// kExitBadArgument for invalid_argument and unsupported, kExitRuntimeError otherwise.
int report_error(const char* stage, const Status& status);

}  // namespace flashattn::cli
