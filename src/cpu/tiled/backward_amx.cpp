// FlashAttention-2 backward of one (sequence, kv head) on AMX bf16 tile products.
//
// Works on transposed tiles (keys down, queries across): S^T = K Q^T and dP^T = V dO^T come
// out of the same product as the forward's scores, P^T and dS^T are then directly the row-major
// a operands of dV += P^T dO and dK += dS^T Q, and dQ is accumulated transposed
// (dQ^T += K^T dS^T) in fp32, turned back into rows once at the end. Inputs are bf16 already;
// P^T and dS^T are rounded to bf16 for the products (as FlashAttention-2 does on GPUs), all
// sums are fp32.
#include "cpu/tiled/backward_amx.h"

#include <algorithm>
#include <limits>

#include "cpu/tiled/amx.h"
#include "cpu/tiled/dropout_tile.h"
#include "cpu/tiled/operands.h"
#include "cpu/tiled/packed_bf16.h"
#include "cpu/tiled/score_tile.h"

namespace flashattn::cpu_tiled {
namespace {

static_assert(kQueryTile == kKeyTile, "the transposed tiles swap the two tile sizes");

struct Dims {
  int64_t dim, dim_v, dim_pad, dim_v_pad, len_q, padded_q, padded_k;
  int64_t group;       // query heads of the item: its slice of the group
  int64_t first_head;  // kv_head * (heads_q / heads_kv) + the slice's first head
};

void load_item(const Problem& problem, const BackwardParams& params, int64_t batch_index,
               int64_t kv_head, const Dims& dims, AmxBackwardBuffers& buffers) {
  const Sequence& sequence = problem.sequences[static_cast<size_t>(batch_index)];
  const int64_t used_k = sequence.used_k, len_q = dims.len_q;
  const HeadRows keys{&problem, &params.k, Side::key, batch_index, kv_head, dims.dim};
  const HeadRows values{&problem, &params.v, Side::key, batch_index, kv_head, dims.dim_v};
  buffers.keys.resize(static_cast<size_t>(dims.padded_k * dims.dim_pad));
  buffers.values.resize(static_cast<size_t>(dims.padded_k * dims.dim_v_pad));
  buffers.keys_t.resize(static_cast<size_t>(dims.padded_k * dims.dim_pad));
  gather_rows_bf16(keys, 0, used_k, dims.padded_k, dims.dim_pad, buffers.keys.data());
  gather_rows_bf16(values, 0, used_k, dims.padded_k, dims.dim_v_pad, buffers.values.data());
  pack_transposed_tiles_bf16(keys, used_k, dims.dim_pad, buffers.keys_t.data());

  const int64_t g_q = dims.padded_q;
  buffers.q_by_dim.resize(static_cast<size_t>(dims.group * g_q * dims.dim_pad));
  buffers.q_by_row.resize(buffers.q_by_dim.size());
  buffers.dout_by_dim.resize(static_cast<size_t>(dims.group * g_q * dims.dim_v_pad));
  buffers.dout_by_row.resize(buffers.dout_by_dim.size());
  // Padded query columns get LSE +inf, so their P^T (and everything after) is exactly 0.
  buffers.lse.assign(static_cast<size_t>(dims.group * g_q), std::numeric_limits<float>::infinity());
  buffers.delta.assign(static_cast<size_t>(dims.group * g_q), 0.0f);
  buffers.dq_t.assign(static_cast<size_t>(dims.group * dims.dim_pad * g_q), 0.0f);
  buffers.out_row.resize(static_cast<size_t>(dims.dim_v));
  std::vector<float>& dout_row = buffers.dq_rows;  // scratch for one dout row here
  dout_row.resize(static_cast<size_t>(std::max(dims.dim_v, dims.dim)));
  for (int64_t g = 0; g < dims.group; ++g) {
    const int64_t head = dims.first_head + g;
    const HeadRows q_rows{&problem, &params.q, Side::query, batch_index, head, dims.dim};
    const HeadRows dout_rows{&problem, &params.dout, Side::query, batch_index, head, dims.dim_v};
    const HeadRows out_rows{&problem, &params.out, Side::query, batch_index, head, dims.dim_v};
    pack_key_tiles_bf16(q_rows, len_q, dims.dim_pad,
                        buffers.q_by_dim.data() + g * g_q * dims.dim_pad);
    pack_value_tiles_bf16(q_rows, len_q, dims.dim_pad,
                          buffers.q_by_row.data() + g * g_q * dims.dim_pad);
    pack_key_tiles_bf16(dout_rows, len_q, dims.dim_v_pad,
                        buffers.dout_by_dim.data() + g * g_q * dims.dim_v_pad);
    pack_value_tiles_bf16(dout_rows, len_q, dims.dim_v_pad,
                          buffers.dout_by_row.data() + g * g_q * dims.dim_v_pad);
    for (int64_t row = 0; row < len_q; ++row) {
      gather_rows(out_rows, row, 1, buffers.out_row.data(), dims.dim_v);
      gather_rows(dout_rows, row, 1, dout_row.data(), dims.dim_v);
      float delta = 0.0f;
      for (int64_t d = 0; d < dims.dim_v; ++d) delta += dout_row[d] * buffers.out_row[d];
      buffers.delta[g * g_q + row] = delta;
      buffers.lse[g * g_q + row] =
          params.lse.data[problem.lse_offset(params.lse, batch_index, head, row)];
    }
  }
  constexpr size_t kTile = kQueryTile * kKeyTile;
  buffers.probs_t.resize(kTile);
  buffers.dprobs_t.resize(kTile);
  buffers.capped_t.resize(kTile);
  buffers.keep.resize(kTile);
  buffers.keep_t.resize(kTile);
  buffers.probs_bf16.resize(kTile);
  buffers.dscores_bf16.resize(kTile);
  buffers.dscores_pairs.resize(kTile);
  buffers.dk.resize(static_cast<size_t>(kKeyTile * dims.dim_pad));
  buffers.dv.resize(static_cast<size_t>(kKeyTile * dims.dim_v_pad));
}

// One (query tile, key tile) step of query head `g` of the group.
void run_tile(const Problem& problem, const BackwardParams& params, int64_t batch_index, int64_t g,
              int64_t row0, int64_t rows, int64_t col0, int64_t cols, const Dims& dims,
              AmxBackwardBuffers& buffers) {
  const Sequence& sequence = problem.sequences[static_cast<size_t>(batch_index)];
  const int64_t head = dims.first_head + g;
  const ScoreContext context{problem.mask(sequence), params.softmax_scale, params.softcap,
                             problem.alibi_slope(batch_index, head),
                             params.alibi_slopes != nullptr};
  const int64_t g_q = dims.padded_q;
  const float* lse = buffers.lse.data() + g * g_q + row0;
  const float* delta = buffers.delta.data() + g * g_q + row0;
  float* probs_t = buffers.probs_t.data();
  float* dprobs_t = buffers.dprobs_t.data();
  const bool softcap = params.softcap > 0.0f;
  const bool dropout = params.dropout_p > 0.0f;
  constexpr int64_t ld = kQueryTile;

  // P^T = exp(S^T - LSE), S^T = K Q^T.
  amx_scores(buffers.keys.data() + col0 * dims.dim_pad,
             buffers.q_by_dim.data() + (g * g_q + row0) * dims.dim_pad, dims.dim_pad, probs_t, ld);
  if (!context.folds_scale() || !fully_visible(context.mask, row0, rows, col0, cols)) {
    finish_scores_transposed(context, row0, rows, col0, cols, probs_t, ld,
                             softcap ? buffers.capped_t.data() : nullptr);
  }
  exp_columns(probs_t, kKeyTile, context.exp_scale(), lse);

  // Dropout: keep factors by query row (the Philox scheme's order), read transposed.
  float* keep_t = buffers.keep_t.data();
  if (dropout) {
    const DropoutSpec spec = make_dropout_spec(params);
    const uint32_t batch_head = static_cast<uint32_t>(batch_index * params.heads_q + head);
    float* keep = buffers.keep.data();
    for (int64_t r = 0; r < rows; ++r) {
      dropout_factors(spec, batch_head, row0 + r, col0, cols, keep + r * kKeyTile);
    }
    for (int64_t c = 0; c < kKeyTile; ++c) {
      for (int64_t r = 0; r < kQueryTile; ++r) {
        keep_t[c * ld + r] = r < rows && c < cols ? keep[r * kKeyTile + c] : 0.0f;
      }
    }
    for (int64_t i = 0; i < kKeyTile * ld; ++i) dprobs_t[i] = probs_t[i] * keep_t[i];
    convert_to_bf16(dprobs_t, kKeyTile * ld, buffers.probs_bf16.data());
  } else {
    convert_to_bf16(probs_t, kKeyTile * ld, buffers.probs_bf16.data());
  }
  // dV += P_dropped^T dO.
  amx_accumulate(buffers.probs_bf16.data(), kKeyTile, kQueryTile,
                 buffers.dout_by_row.data() + (g * g_q + row0) * dims.dim_v_pad, dims.dim_v_pad,
                 buffers.dv.data(), dims.dim_v_pad);
  // dP^T = V dO^T; dS^T = P^T * (dP^T * keep - D) * d(score)/d(dot).
  amx_scores(buffers.values.data() + col0 * dims.dim_v_pad,
             buffers.dout_by_dim.data() + (g * g_q + row0) * dims.dim_v_pad, dims.dim_v_pad,
             dprobs_t, ld);
  for (int64_t c = 0; c < kKeyTile; ++c) {
    float* dscores = dprobs_t + c * ld;
    const float* p = probs_t + c * ld;
    if (dropout) {
      const float* keep = keep_t + c * ld;
      for (int64_t r = 0; r < ld; ++r) dscores[r] = p[r] * (dscores[r] * keep[r] - delta[r]);
    } else {
      for (int64_t r = 0; r < ld; ++r) dscores[r] = p[r] * (dscores[r] - delta[r]);
    }
    if (softcap) {
      const float* capped = buffers.capped_t.data() + c * ld;
      for (int64_t r = 0; r < ld; ++r) {
        // Hidden elements have P = 0, whatever their (unset) capped value says.
        dscores[r] = p[r] == 0.0f ? 0.0f
                                  : dscores[r] * modified_score_grad<float>(
                                                     capped[r], context.scale, params.softcap);
      }
    } else {
      for (int64_t r = 0; r < ld; ++r) dscores[r] *= context.scale;
    }
  }
  // dK += dS^T Q and dQ^T += K^T dS^T.
  convert_to_bf16(dprobs_t, kKeyTile * ld, buffers.dscores_bf16.data());
  amx_accumulate(buffers.dscores_bf16.data(), kKeyTile, kQueryTile,
                 buffers.q_by_row.data() + (g * g_q + row0) * dims.dim_pad, dims.dim_pad,
                 buffers.dk.data(), dims.dim_pad);
  pack_row_pairs_bf16(dprobs_t, buffers.dscores_pairs.data());
  amx_accumulate(buffers.keys_t.data() + col0 * dims.dim_pad, dims.dim_pad, kKeyTile,
                 buffers.dscores_pairs.data(), kQueryTile,
                 buffers.dq_t.data() + g * dims.dim_pad * g_q + row0, g_q);
}

}  // namespace

void backward_item_amx(const Problem& problem, const BackwardParams& params, int64_t batch_index,
                       int64_t kv_head, const GroupSlice& slice, const KeyGradientSink& sink,
                       AmxBackwardBuffers& buffers) {
  const Sequence& sequence = problem.sequences[static_cast<size_t>(batch_index)];
  Dims dims;
  dims.dim = params.head_dim;
  dims.dim_v = params.head_dim_v;
  dims.dim_pad = padded_dim(dims.dim);
  dims.dim_v_pad = padded_dim(dims.dim_v);
  dims.group = slice.count;
  dims.first_head = kv_head * problem.group + slice.first;
  dims.len_q = sequence.len_q;
  dims.padded_q = (sequence.len_q + kQueryTile - 1) / kQueryTile * kQueryTile;
  dims.padded_k = sequence.key_tiles() * kKeyTile;
  load_item(problem, params, batch_index, kv_head, dims, buffers);

  const MaskSpec mask = problem.mask(sequence);
  for (int64_t col0 = 0; col0 < sequence.used_k; col0 += kKeyTile) {
    const int64_t cols = std::min(kKeyTile, sequence.used_k - col0);
    std::fill(buffers.dk.begin(), buffers.dk.end(), 0.0f);
    std::fill(buffers.dv.begin(), buffers.dv.end(), 0.0f);
    for (int64_t g = 0; g < dims.group; ++g) {
      for (int64_t row0 = 0; row0 < sequence.len_q; row0 += kQueryTile) {
        const int64_t rows = std::min(kQueryTile, sequence.len_q - row0);
        const ColumnRange visible = visible_columns(mask, row0, rows);
        if (visible.first >= visible.last || visible.last <= col0 || visible.first >= col0 + cols) {
          continue;  // no row of this query tile sees a key of this key tile
        }
        run_tile(problem, params, batch_index, g, row0, rows, col0, cols, dims, buffers);
      }
    }
    sink.store_tile(col0, cols, buffers.dk.data(), dims.dim_pad, buffers.dv.data(), dims.dim_v_pad);
  }
  sink.finish(sequence);
  // dQ^T back to rows.
  buffers.dq_rows.resize(static_cast<size_t>(dims.len_q * dims.dim));
  for (int64_t g = 0; g < dims.group; ++g) {
    const float* dq_t = buffers.dq_t.data() + g * dims.dim_pad * dims.padded_q;
    for (int64_t row = 0; row < dims.len_q; ++row) {
      for (int64_t d = 0; d < dims.dim; ++d) {
        buffers.dq_rows[row * dims.dim + d] = dq_t[d * dims.padded_q + row];
      }
    }
    scatter_rows(
        HeadRows{&problem, &params.dq, Side::query, batch_index, dims.first_head + g, dims.dim}, 0,
        dims.len_q, buffers.dq_rows.data(), dims.dim);
  }
}

}  // namespace flashattn::cpu_tiled
