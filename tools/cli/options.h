// Command-line flags -> Problem: parsing, defaults that depend on other flags, device choice.
#pragma once

#include <optional>

#include "problem.h"

namespace flashattn::cli {

// Fills `problem` from the command line. Returns an exit code when the program should stop
// right away: 0 after --help, 2 after a bad flag (the message is already printed).
std::optional<int> parse_options(int argc, char** argv, Problem* problem);

}  // namespace flashattn::cli
