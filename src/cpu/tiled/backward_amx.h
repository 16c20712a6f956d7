// The backward of one (sequence, kv head) on AMX tile products, for bf16 problems.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/tiled/key_gradients.h"
#include "cpu/tiled/problem.h"

namespace flashattn::cpu_tiled {

// Per-thread buffers, reused from item to item.
struct AmxBackwardBuffers {
  std::vector<uint16_t> keys, values, keys_t;   // key side, bf16
  std::vector<uint16_t> q_by_dim, dout_by_dim;  // pairs along the head dim
  std::vector<uint16_t> q_by_row, dout_by_row;  // pairs along the query rows
  std::vector<float> lse, delta, dq_t;          // [slice][padded_q], dq_t [slice][dim][q]
  std::vector<float> probs_t, dprobs_t, capped_t, keep, keep_t, dk, dv, out_row, dq_rows;
  std::vector<uint16_t> probs_bf16, dscores_bf16, dscores_pairs;
};

// Same contract as the fp32 tiles of backward.cpp (same sums, in a fixed order), computed in
// the transposed form S^T = K Q^T so that every product is an AMX tile product without
// transposing a tile: dV += P^T dO, dK += dS^T Q, dQ^T += K^T dS^T.
void backward_item_amx(const Problem& problem, const BackwardParams& params, int64_t batch_index,
                       int64_t kv_head, const GroupSlice& slice, const KeyGradientSink& sink,
                       AmxBackwardBuffers& buffers);

}  // namespace flashattn::cpu_tiled
