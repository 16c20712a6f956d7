// The results of a run: the text report on stdout and the JSON document.
#pragma once

#include <optional>
#include <string>

#include "check.h"
#include "flops.h"
#include "problem.h"
#include "timing.h"

namespace flashattn::cli {

struct RunResults {
  Backend forward_backend = Backend::automatic;
  Backend backward_backend = Backend::automatic;
  Timing forward;
  std::optional<Timing> backward;  // absent with --no-backward or when skipped
  std::string backward_skipped;    // why the backend could not run the backward, if so
  FlopCount flops;
  std::optional<CheckResult> check;  // absent without --check
};

void print_report(const Problem& problem, const RunResults& results);

// Writes the JSON document to `path` ("-": stdout). Throws std::runtime_error on I/O errors.
void write_json(const Problem& problem, const RunResults& results, const std::string& path);

}  // namespace flashattn::cli
