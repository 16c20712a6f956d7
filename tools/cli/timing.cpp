// Times repeated library calls: warm-up runs, then the median of the timed ones.
#include "timing.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>

#include "buffer.h"

#if defined(FLASHATTN_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace flashattn::cli {
namespace {

Status time_on_cpu(int iters, const std::function<Status()>& call, Timing* timing) {
  for (int i = 0; i < iters; ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (Status status = call(); !status.ok()) return status;
    const auto stop = std::chrono::steady_clock::now();
    timing->milliseconds.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
  }
  return Status::Ok();
}

#if defined(FLASHATTN_WITH_CUDA)
// Events on the default stream (the library's stream when params.stream is null); one pair
// per run, read after a single synchronisation so the runs queue back to back.
Status time_on_gpu(int iters, const std::function<Status()>& call, Timing* timing) {
  std::vector<cudaEvent_t> events(2 * static_cast<size_t>(iters));
  for (cudaEvent_t& event : events) cudaEventCreate(&event);
  Status status = Status::Ok();
  for (int i = 0; i < iters && status.ok(); ++i) {
    cudaEventRecord(events[2 * i], nullptr);
    status = call();
    cudaEventRecord(events[2 * i + 1], nullptr);
  }
  if (status.ok()) {
    synchronize(Device::cuda);
    for (int i = 0; i < iters; ++i) {
      float elapsed = 0;
      cudaEventElapsedTime(&elapsed, events[2 * i], events[2 * i + 1]);
      timing->milliseconds.push_back(elapsed);
    }
  }
  for (cudaEvent_t event : events) cudaEventDestroy(event);
  return status;
}
#endif

}  // namespace

double Timing::median_ms() const {
  if (milliseconds.empty()) return 0;
  std::vector<double> sorted = milliseconds;
  std::sort(sorted.begin(), sorted.end());
  const size_t middle = sorted.size() / 2;
  return sorted.size() % 2 == 1 ? sorted[middle] : 0.5 * (sorted[middle - 1] + sorted[middle]);
}

double Timing::min_ms() const {
  return milliseconds.empty() ? 0 : *std::min_element(milliseconds.begin(), milliseconds.end());
}

Status time_runs(Device device, int warmup, int iters, const std::function<Status()>& call,
                 Timing* timing) {
  timing->warmup = warmup;
  timing->milliseconds.clear();
  for (int i = 0; i < warmup; ++i) {
    if (Status status = call(); !status.ok()) return status;
  }
  synchronize(device);
  if (device == Device::cpu) return time_on_cpu(iters, call, timing);
#if defined(FLASHATTN_WITH_CUDA)
  return time_on_gpu(iters, call, timing);
#else
  throw std::runtime_error("device cuda: this flashattn was built without CUDA");
#endif
}

}  // namespace flashattn::cli
