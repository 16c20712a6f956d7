// AttentionCase: one row of a test table (sizes, dtype, features, layout) with a printable name.
#pragma once

#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "flashattn/types.h"

namespace flashattn::testing {

enum class AlibiMode { none, per_head, per_batch_head };

// How q, k, v, out and the gradients are laid out in memory (LSE follows along).
enum class Layout {
  contiguous,   // [batch, seqlen, heads, dim] packed tightly
  padded,       // same order with gaps after each head, row and batch (the gaps hold NaN);
                // explicit padded LSE strides too
  heads_major,  // [batch, heads, seqlen, dim]: heads outermost after batch (transposed)
};

struct AttentionCase {
  int64_t batch = 1;
  int64_t seqlen_q = 1;
  int64_t seqlen_k = 1;
  int64_t heads_q = 1;
  int64_t heads_kv = 1;
  int64_t head_dim = 64;
  int64_t head_dim_v = 0;  // 0: same as head_dim
  DType dtype = DType::bf16;

  bool causal = false;
  int64_t window_left = -1;
  int64_t window_right = -1;
  float softcap = 0.0f;
  AlibiMode alibi = AlibiMode::none;
  float dropout_p = 0.0f;
  float softmax_scale = std::numeric_limits<float>::quiet_NaN();  // NaN: the default

  // Varlen: one (len_q, len_k) per sequence; when set, batch / seqlen_q / seqlen_k above are
  // ignored (batch = size, seqlens = maxima). Empty: dense.
  std::vector<std::pair<int64_t, int64_t>> varlen;
  // seqused_k[b] = len_k(b) * (b + 1) / (batch + 1): fewer keys than stored, differing per
  // sequence (0 for short sequences, which makes rows that see no key).
  bool use_seqused_k = false;
  Layout layout = Layout::contiguous;

  bool is_varlen() const { return !varlen.empty(); }
  int64_t effective_batch() const;
  int64_t max_seqlen_q() const;
  int64_t max_seqlen_k() const;
  int64_t value_dim() const { return head_dim_v == 0 ? head_dim : head_dim_v; }

  // Identifier usable as a gtest parameter name: letters, digits and '_' only,
  // e.g. "bf16_b3_q113_k203_h8x1_d64_causal_alibi_head".
  std::string name() const;
};

// For gtest's failure messages.
void PrintTo(const AttentionCase& config, std::ostream* stream);

}  // namespace flashattn::testing
