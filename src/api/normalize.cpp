// Defaults of the contract, applied once here so that no backend re-derives them.
#include "api/normalize.h"

#include <cmath>

#include "common/score_mods.h"

namespace flashattn::detail {

void normalize_args(AttentionArgs& args) {
  if (args.head_dim_v == 0) args.head_dim_v = args.head_dim;
  if (std::isnan(args.softmax_scale)) {
    args.softmax_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(args.head_dim)));
  }
  effective_window(args.causal, args.window_left, args.window_right, &args.window_left,
                   &args.window_right);
  // On the CPU the pair is readable now: fold it into the scalars the CPU backends use.
  if (args.dropout_seed_offset != nullptr && args.device == Device::cpu) {
    args.dropout_seed = static_cast<uint64_t>(args.dropout_seed_offset[0]);
    args.dropout_offset = static_cast<uint64_t>(args.dropout_seed_offset[1]);
    args.dropout_seed_offset = nullptr;
  }
}

void normalize_lse(const AttentionArgs& args, LseRef& lse) {
  if (lse.batch_stride != 0 || lse.head_stride != 0) return;
  if (is_varlen(args)) {
    lse.batch_stride = 0;
    lse.head_stride = args.total_q;
  } else {
    lse.head_stride = args.seqlen_q;
    lse.batch_stride = args.heads_q * args.seqlen_q;
  }
}

}  // namespace flashattn::detail
