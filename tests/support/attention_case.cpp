// Names and derived sizes of AttentionCase rows.
#include "support/attention_case.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace flashattn::testing {
namespace {

// A float in a name: 0.5 -> "0p5" (gtest names allow no '.').
std::string float_token(float value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", static_cast<double>(value));
  std::string token(text);
  std::replace(token.begin(), token.end(), '.', 'p');
  std::replace(token.begin(), token.end(), '-', 'm');
  token.erase(std::remove(token.begin(), token.end(), '+'), token.end());  // 1e+06: 1e06
  return token;
}

std::string window_token(int64_t bound) {
  return bound < 0 ? "inf" : std::to_string(bound);
}

}  // namespace

int64_t AttentionCase::effective_batch() const {
  return is_varlen() ? static_cast<int64_t>(varlen.size()) : batch;
}

int64_t AttentionCase::max_seqlen_q() const {
  if (!is_varlen()) return seqlen_q;
  int64_t longest = 0;
  for (const auto& [len_q, len_k] : varlen) longest = std::max(longest, len_q);
  return longest;
}

int64_t AttentionCase::max_seqlen_k() const {
  if (!is_varlen()) return seqlen_k;
  int64_t longest = 0;
  for (const auto& [len_q, len_k] : varlen) longest = std::max(longest, len_k);
  return longest;
}

std::string AttentionCase::name() const {
  std::string name = to_string(dtype);
  if (is_varlen()) {
    name += "_varlen";
    for (const auto& [len_q, len_k] : varlen) {
      name += "_" + std::to_string(len_q) + "x" + std::to_string(len_k);
    }
  } else {
    name += "_b" + std::to_string(batch) + "_q" + std::to_string(seqlen_q) + "_k" +
            std::to_string(seqlen_k);
  }
  name += "_h" + std::to_string(heads_q) + "x" + std::to_string(heads_kv);
  name += "_d" + std::to_string(head_dim);
  if (head_dim_v != 0 && head_dim_v != head_dim) name += "v" + std::to_string(head_dim_v);
  if (causal) name += "_causal";
  if (window_left >= 0 || window_right >= 0) {
    name += "_win" + window_token(window_left) + "_" + window_token(window_right);
  }
  if (softcap > 0.0f) name += "_softcap" + float_token(softcap);
  if (alibi == AlibiMode::per_head) name += "_alibi_head";
  if (alibi == AlibiMode::per_batch_head) name += "_alibi_batch";
  if (dropout_p > 0.0f) name += "_drop" + float_token(dropout_p);
  if (!std::isnan(softmax_scale)) name += "_scale" + float_token(softmax_scale);
  if (use_seqused_k) name += "_seqused";
  if (layout == Layout::padded) name += "_padded";
  if (layout == Layout::heads_major) name += "_bhsd";
  return name;
}

void PrintTo(const AttentionCase& config, std::ostream* stream) {
  *stream << config.name();
}

}  // namespace flashattn::testing
