// The attention problem as the tiled CPU backend sees it: per-sequence bounds and tile sizes.
#pragma once

#include <cstdint>
#include <vector>

#include "common/score_mods.h"
#include "cpu/sequence_bounds.h"
#include "flashattn/params.h"

namespace flashattn::cpu_tiled {

// Query rows per tile (Br of FlashAttention-2) and keys per tile (Bc). 64 x 64 fp32 keeps the
// score tile (16 KiB) in L1 next to a k/v tile of head_dim <= 64, and is a multiple of the
// micro-kernel's 16-float vectors.
inline constexpr int64_t kQueryTile = 64;
inline constexpr int64_t kKeyTile = 64;

// Where sequence b lives and how much of it takes part, plus its key-tile count.
struct Sequence : cpu::SequenceBounds {
  int64_t key_tiles() const { return (used_k + kKeyTile - 1) / kKeyTile; }
};

// Validated, normalised params plus what every pass derives from them once.
struct Problem {
  const AttentionArgs* args = nullptr;
  std::vector<Sequence> sequences;
  int64_t group = 1;  // heads_q / heads_kv
  bool varlen = false;

  MaskSpec mask(const Sequence& sequence) const {
    return MaskSpec{sequence.len_q, sequence.used_k, args->window_left, args->window_right};
  }
  float alibi_slope(int64_t batch_index, int64_t head) const {
    return args->alibi_slopes == nullptr
               ? 0.0f
               : args->alibi_slopes[batch_index * args->alibi_batch_stride + head];
  }
  // Element offset of (row within the sequence, head) in a q-side or k-side tensor.
  int64_t q_offset(const TensorRef& ref, int64_t batch_index, int64_t row, int64_t head) const;
  int64_t k_offset(const TensorRef& ref, int64_t batch_index, int64_t row, int64_t head) const;
  // Element offset of (b, h, row) in the LSE.
  int64_t lse_offset(const LseRef& lse, int64_t batch_index, int64_t head, int64_t row) const;
};

// Reads cu_seqlens / seqused_k (host memory, already validated by src/api).
Problem make_problem(const AttentionArgs& args);

// params.num_threads, or the OpenMP default for 0.
int thread_count(const AttentionArgs& args);

}  // namespace flashattn::cpu_tiled
