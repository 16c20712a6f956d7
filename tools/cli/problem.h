// The attention problem the CLI runs: sizes, options and how to run it, as the flags describe it.
#pragma once

#include <omp.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "flashattn/types.h"

namespace flashattn::cli {

// One packed sequence of a --varlen problem.
struct SequenceLengths {
  int64_t q = 0;
  int64_t k = 0;
};

struct Problem {
  // Sizes. For a varlen problem batch is the number of sequences and seqlen_q / seqlen_k
  // their maxima (the flash_attn max_seqlen convention).
  int64_t batch = 2;
  int64_t heads_q = 16;
  int64_t heads_kv = 16;
  int64_t seqlen_q = 2048;
  int64_t seqlen_k = 2048;
  int64_t head_dim = 64;
  int64_t head_dim_v = 64;
  std::vector<SequenceLengths> sequences;  // empty: dense [batch, seqlen, heads, dim]
  DType dtype = DType::bf16;

  // Semantics, passed to the library as given.
  bool causal = true;
  int64_t window_left = -1;
  int64_t window_right = -1;
  float softcap = 0.0f;
  bool alibi = false;
  float dropout_p = 0.0f;
  uint64_t seed = 0;
  uint64_t offset = 0;
  float softmax_scale = std::numeric_limits<float>::quiet_NaN();

  // How to run it.
  Device device = Device::cpu;
  Backend backend = Backend::automatic;
  int threads = 0;
  int iters = 3;
  int warmup = 1;
  bool run_backward = true;
  bool deterministic = false;
  bool check = false;
  std::string json_path;  // empty: no JSON; "-": JSON on stdout instead of the text report

  bool varlen() const { return !sequences.empty(); }

  // A sliding window beyond plain causal masking.
  bool has_window() const { return window_left >= 0 || (!causal && window_right >= 0); }

  // CPU threads the backends use (--threads, else the OpenMP default).
  int cpu_threads() const { return threads > 0 ? threads : omp_get_max_threads(); }

  // Lengths of sequence b (every sequence has the maxima when dense).
  SequenceLengths lengths(int64_t b) const {
    return varlen() ? sequences[b] : SequenceLengths{seqlen_q, seqlen_k};
  }

  // Query and key tokens of the first `count` sequences.
  SequenceLengths tokens(int64_t count) const {
    SequenceLengths sum;
    for (int64_t b = 0; b < count; ++b) {
      sum.q += lengths(b).q;
      sum.k += lengths(b).k;
    }
    return sum;
  }
  int64_t total_q() const { return tokens(batch).q; }
  int64_t total_k() const { return tokens(batch).k; }
};

}  // namespace flashattn::cli
