// Times repeated library calls: warm-up runs, then the median of the timed ones.
#pragma once

#include <functional>
#include <vector>

#include "flashattn/types.h"

namespace flashattn::cli {

struct Timing {
  int warmup = 0;
  std::vector<double> milliseconds;  // one per timed run, in run order

  double median_ms() const;
  double min_ms() const;
};

// Runs `call` warmup + iters times, timing the last iters (CUDA events on the GPU, a steady
// clock on the CPU). Stops at the first call that fails and returns its Status.
Status time_runs(Device device, int warmup, int iters, const std::function<Status()>& call,
                 Timing* timing);

}  // namespace flashattn::cli
