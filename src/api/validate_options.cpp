// Checks of the score and dropout options: softmax_scale, window, softcap, ALiBi, dropout_p.
#include <cmath>
#include <string>

#include "api/validate_args.h"
#include "api/validate_common.h"

namespace flashattn::detail {
namespace {

Status check_window_bound(const char* name, int64_t bound) {
  if (bound >= -1) return Status::Ok();
  return invalid(name, "expected -1 (unbounded) or >= 0, got " + std::to_string(bound));
}

// Slopes are [heads_q] (batch stride 0) or [batch, heads_q] rows at least heads_q apart.
Status check_alibi(const AttentionArgs& args) {
  if (args.alibi_slopes == nullptr) return Status::Ok();
  const int64_t stride = args.alibi_batch_stride;
  if (stride < 0) {
    return invalid("alibi_batch_stride", "expected >= 0, got " + std::to_string(stride));
  }
  if (stride != 0 && stride < args.heads_q) {
    return invalid("alibi_batch_stride",
                   "expected 0 (slopes [heads_q]) or >= heads_q = " + std::to_string(args.heads_q) +
                       ", got " + std::to_string(stride));
  }
  int64_t last_row = 0;
  int64_t end = 0;
  if (args.batch > 0 && (!checked_mul(args.batch - 1, stride, &last_row) ||
                         !checked_add(last_row, args.heads_q, &end))) {
    return invalid("alibi_batch_stride", "largest offset overflows int64 for batch " +
                                             std::to_string(args.batch) + " with stride " +
                                             std::to_string(stride));
  }
  return Status::Ok();
}

}  // namespace

Status check_options(const AttentionArgs& args) {
  if (std::isinf(args.softmax_scale)) {
    return invalid("softmax_scale", "expected a finite value (or NaN for 1/sqrt(head_dim)), got " +
                                        format_float(args.softmax_scale));
  }
  if (Status status = check_window_bound("window_left", args.window_left); !status.ok()) {
    return status;
  }
  if (Status status = check_window_bound("window_right", args.window_right); !status.ok()) {
    return status;
  }
  if (!std::isfinite(args.softcap) || args.softcap < 0.0f) {
    return invalid("softcap", "expected a finite value >= 0 (0 disables it), got " +
                                  format_float(args.softcap));
  }
  if (Status status = check_alibi(args); !status.ok()) return status;
  // Written so that NaN fails too.
  if (!(args.dropout_p >= 0.0f && args.dropout_p < 1.0f)) {
    return invalid("dropout_p", "expected a value in [0, 1), got " + format_float(args.dropout_p));
  }
  if (args.num_threads < 0) {
    return invalid("num_threads", "expected >= 0 (0 for the OpenMP default), got " +
                                      std::to_string(args.num_threads));
  }
  return Status::Ok();
}

}  // namespace flashattn::detail
