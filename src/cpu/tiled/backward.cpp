// FlashAttention-2 backward on the CPU: recompute P from Q, K and the saved LSE one tile at a
// time; dK and dV accumulate per key tile, dQ in an fp32 buffer of the item.
//
// A work item is (batch, kv head, slice of the group's query heads): it owns dQ of its query
// heads and dK/dV of its kv head — directly when the group is one slice, as fp32 partial sums
// added afterwards in slice order otherwise (few (batch, kv head) pairs, e.g. MQA: see
// key_gradients.h). No two threads ever write the same gradient and every sum runs in one
// fixed order, chosen from the problem alone: the result is bitwise reproducible whatever the
// thread count or schedule, with no atomics. Scratch is O(seqlen) per thread.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "api/backends.h"
#include "cpu/tiled/amx.h"
#include "cpu/tiled/backward_amx.h"
#include "cpu/tiled/dropout_tile.h"
#include "cpu/tiled/kernels.h"
#include "cpu/tiled/key_gradients.h"
#include "cpu/tiled/operands.h"
#include "cpu/tiled/problem.h"
#include "cpu/tiled/score_tile.h"

namespace flashattn::cpu_tiled {
namespace {

// fp32 operands of one (sequence, kv head) and of the query heads of its group.
struct ItemBuffers {
  // Key side, len rounded up to whole key tiles.
  std::vector<float> keys_t;    // transposed key tiles [dim][kKeyTile] (for S = Q K^T)
  std::vector<float> keys;      // rows [keys][dim] (for dQ += dS K)
  std::vector<float> values_t;  // transposed key tiles [dim_v][kKeyTile] (for dP = dO V^T)
  // Query side, [group][len_q][...].
  std::vector<float> queries, douts, dqs;
  std::vector<float> lse, delta;  // [group][len_q]; delta is D = rowsum(dO * O)
  // Tiles.
  std::vector<float> probs, dropped, dprobs, capped, keep, dk, dv, out_row;
};

void load_item(const Problem& problem, const BackwardParams& params, int64_t batch_index,
               int64_t kv_head, const GroupSlice& slice, ItemBuffers& buffers) {
  const Sequence& sequence = problem.sequences[static_cast<size_t>(batch_index)];
  const int64_t dim = params.head_dim, dim_v = params.head_dim_v, group = slice.count;
  const int64_t padded_keys = sequence.key_tiles() * kKeyTile;
  const int64_t len_q = sequence.len_q;
  buffers.keys_t.resize(static_cast<size_t>(padded_keys * dim));
  buffers.keys.resize(static_cast<size_t>(padded_keys * dim));
  buffers.values_t.resize(static_cast<size_t>(padded_keys * dim_v));
  const HeadRows key_rows{&problem, &params.k, Side::key, batch_index, kv_head, dim};
  const HeadRows value_rows{&problem, &params.v, Side::key, batch_index, kv_head, dim_v};
  gather_transposed_tiles(key_rows, sequence.used_k, buffers.keys_t.data());
  gather_rows(key_rows, 0, sequence.used_k, buffers.keys.data(), dim);
  gather_transposed_tiles(value_rows, sequence.used_k, buffers.values_t.data());

  buffers.queries.resize(static_cast<size_t>(group * len_q * dim));
  buffers.douts.resize(static_cast<size_t>(group * len_q * dim_v));
  buffers.dqs.assign(static_cast<size_t>(group * len_q * dim), 0.0f);
  buffers.lse.resize(static_cast<size_t>(group * len_q));
  buffers.delta.resize(static_cast<size_t>(group * len_q));
  buffers.out_row.resize(static_cast<size_t>(dim_v));
  for (int64_t g = 0; g < group; ++g) {
    const int64_t head = kv_head * problem.group + slice.first + g;
    float* douts = buffers.douts.data() + g * len_q * dim_v;
    gather_rows(HeadRows{&problem, &params.q, Side::query, batch_index, head, dim}, 0, len_q,
                buffers.queries.data() + g * len_q * dim, dim);
    gather_rows(HeadRows{&problem, &params.dout, Side::query, batch_index, head, dim_v}, 0, len_q,
                douts, dim_v);
    const HeadRows out_rows{&problem, &params.out, Side::query, batch_index, head, dim_v};
    for (int64_t row = 0; row < len_q; ++row) {
      gather_rows(out_rows, row, 1, buffers.out_row.data(), dim_v);
      float delta = 0.0f;
      for (int64_t d = 0; d < dim_v; ++d) delta += douts[row * dim_v + d] * buffers.out_row[d];
      buffers.delta[g * len_q + row] = delta;
      buffers.lse[g * len_q + row] =
          params.lse.data[problem.lse_offset(params.lse, batch_index, head, row)];
    }
  }
  buffers.probs.resize(kQueryTile * kKeyTile);
  buffers.dropped.resize(kQueryTile * kKeyTile);
  buffers.dprobs.resize(kQueryTile * kKeyTile);
  buffers.capped.resize(kQueryTile * kKeyTile);
  buffers.keep.resize(kQueryTile * kKeyTile);
  buffers.dk.resize(static_cast<size_t>(kKeyTile * dim));
  buffers.dv.resize(static_cast<size_t>(kKeyTile * dim_v));
}

// Everything one (query tile, key tile) step reads.
struct TileStep {
  int64_t group_index;  // query head within the item's slice of the group
  int64_t head;         // that query head
  int64_t row0, rows;   // query rows
  int64_t col0, cols;   // key columns
};

void run_tile(const Problem& problem, const BackwardParams& params, const Kernels& kernels,
              int64_t batch_index, const TileStep& step, ItemBuffers& buffers) {
  const Sequence& sequence = problem.sequences[static_cast<size_t>(batch_index)];
  const int64_t dim = params.head_dim, dim_v = params.head_dim_v, len_q = sequence.len_q;
  const int64_t head = step.head;
  const ScoreContext context{problem.mask(sequence), params.softmax_scale, params.softcap,
                             problem.alibi_slope(batch_index, head),
                             params.alibi_slopes != nullptr};
  const int64_t rows = step.rows, cols = step.cols;
  const float* query = buffers.queries.data() + (step.group_index * len_q + step.row0) * dim;
  const float* dout = buffers.douts.data() + (step.group_index * len_q + step.row0) * dim_v;
  const float* lse = buffers.lse.data() + step.group_index * len_q + step.row0;
  const float* delta = buffers.delta.data() + step.group_index * len_q + step.row0;
  float* dq = buffers.dqs.data() + (step.group_index * len_q + step.row0) * dim;
  float* probs = buffers.probs.data();
  float* dprobs = buffers.dprobs.data();
  const bool softcap = params.softcap > 0.0f;
  const bool dropout = params.dropout_p > 0.0f;
  float* capped = softcap ? buffers.capped.data() : nullptr;

  // P = exp(S - LSE): the forward's softmax, recomputed.
  kernels.gemm(rows, cols, dim, query, dim, 1, buffers.keys_t.data() + step.col0 * dim, kKeyTile,
               probs, kKeyTile, false);
  finish_scores(context, step.row0, rows, step.col0, cols, probs, kKeyTile, capped);
  for (int64_t r = 0; r < rows; ++r) {
    float* row_probs = probs + r * kKeyTile;
    if (std::isinf(lse[r])) {  // the row saw no key: no gradient flows through it
      std::fill(row_probs, row_probs + cols, 0.0f);
    } else {
      kernels.exp_shifted(row_probs, cols, context.exp_scale(), lse[r]);
    }
  }
  // With dropout, dV and dP see the kept probabilities, rescaled by 1 / (1 - p).
  const float* dropped = probs;
  float* keep = buffers.keep.data();
  if (dropout) {
    const DropoutSpec spec = make_dropout_spec(params);
    const uint32_t batch_head = static_cast<uint32_t>(batch_index * params.heads_q + head);
    float* dropped_probs = buffers.dropped.data();
    for (int64_t r = 0; r < rows; ++r) {
      float* row_keep = keep + r * kKeyTile;
      dropout_factors(spec, batch_head, step.row0 + r, step.col0, cols, row_keep);
      for (int64_t j = 0; j < cols; ++j) {
        dropped_probs[r * kKeyTile + j] = probs[r * kKeyTile + j] * row_keep[j];
      }
    }
    dropped = dropped_probs;
  }
  // dV += P_dropped^T dO.
  kernels.gemm(cols, dim_v, rows, dropped, 1, kKeyTile, dout, dim_v, buffers.dv.data(), dim_v,
               true);
  // dP = dO V^T (then through the dropout: dP_dropped = dP * keep factor).
  kernels.gemm(rows, cols, dim_v, dout, dim_v, 1, buffers.values_t.data() + step.col0 * dim_v,
               kKeyTile, dprobs, kKeyTile, false);
  if (dropout) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) dprobs[r * kKeyTile + j] *= keep[r * kKeyTile + j];
    }
  }
  // dS = P * (dP_dropped - D), then times d(score)/d(dot) (scale, softcap's derivative).
  for (int64_t r = 0; r < rows; ++r) {
    float* row_dscores = dprobs + r * kKeyTile;
    const float* row_probs = probs + r * kKeyTile;
    for (int64_t j = 0; j < cols; ++j) {
      row_dscores[j] = row_probs[j] * (row_dscores[j] - delta[r]);
    }
    if (softcap) {
      const float* row_capped = capped + r * kKeyTile;
      for (int64_t j = 0; j < cols; ++j) {
        row_dscores[j] *= modified_score_grad<float>(row_capped[j], context.scale, params.softcap);
      }
    } else {
      for (int64_t j = 0; j < cols; ++j) row_dscores[j] *= context.scale;
    }
  }
  // dK += dS^T Q and dQ += dS K.
  kernels.gemm(cols, dim, rows, dprobs, 1, kKeyTile, query, dim, buffers.dk.data(), dim, true);
  kernels.gemm(rows, dim, cols, dprobs, kKeyTile, 1, buffers.keys.data() + step.col0 * dim, dim, dq,
               dim, true);
}

void run_item(const Problem& problem, const BackwardParams& params, const Kernels& kernels,
              int64_t batch_index, int64_t kv_head, const GroupSlice& slice,
              const KeyGradientSink& sink, ItemBuffers& buffers) {
  const Sequence& sequence = problem.sequences[static_cast<size_t>(batch_index)];
  const int64_t dim = params.head_dim;
  load_item(problem, params, batch_index, kv_head, slice, buffers);
  const MaskSpec mask = problem.mask(sequence);
  for (int64_t col0 = 0; col0 < sequence.used_k; col0 += kKeyTile) {
    const int64_t cols = std::min(kKeyTile, sequence.used_k - col0);
    std::fill(buffers.dk.begin(), buffers.dk.end(), 0.0f);
    std::fill(buffers.dv.begin(), buffers.dv.end(), 0.0f);
    for (int64_t g = 0; g < slice.count; ++g) {
      const int64_t head = kv_head * problem.group + slice.first + g;
      for (int64_t row0 = 0; row0 < sequence.len_q; row0 += kQueryTile) {
        const int64_t rows = std::min(kQueryTile, sequence.len_q - row0);
        const ColumnRange visible = visible_columns(mask, row0, rows);
        if (visible.first >= visible.last || visible.last <= col0 || visible.first >= col0 + cols) {
          continue;  // no row of this query tile sees a key of this key tile
        }
        run_tile(problem, params, kernels, batch_index, TileStep{g, head, row0, rows, col0, cols},
                 buffers);
      }
    }
    sink.store_tile(col0, cols, buffers.dk.data(), dim, buffers.dv.data(), params.head_dim_v);
  }
  sink.finish(sequence);
  for (int64_t g = 0; g < slice.count; ++g) {
    scatter_rows(HeadRows{&problem, &params.dq, Side::query, batch_index,
                          kv_head * problem.group + slice.first + g, dim},
                 0, sequence.len_q, buffers.dqs.data() + g * sequence.len_q * dim, dim);
  }
}

// One (batch, kv head, group slice) of the backward.
struct WorkItem {
  int64_t batch_index;
  int64_t kv_head;
  GroupSlice slice;
};

}  // namespace

Status backward(const BackwardParams& params) {
  const Problem problem = make_problem(params);
  const Kernels& chosen = kernels();
  const int64_t slices = group_slices(params, problem.group);
  const int64_t pairs = params.batch * params.heads_kv;
  std::vector<WorkItem> items;
  for (int64_t pair = 0; pair < pairs; ++pair) {
    for (int64_t slice = 0; slice < slices; ++slice) {
      items.push_back(WorkItem{pair / params.heads_kv, pair % params.heads_kv,
                               group_slice(problem.group, slices, slice)});
    }
  }
  // Sliced groups: per-item fp32 partial dK / dV (O(seqlen_k) each), summed below.
  std::vector<std::vector<float>> partial_dk(slices > 1 ? items.size() : 0);
  std::vector<std::vector<float>> partial_dv(partial_dk.size());
  const int64_t count = static_cast<int64_t>(items.size());
  const int threads = thread_count(params);
  // bf16 runs on AMX tile products where the CPU has them; everything else on fp32 tiles.
  const bool amx = params.dtype == DType::bf16 && amx_bf16_available();
#pragma omp parallel num_threads(threads)
  {
    ItemBuffers buffers;
    AmxBackwardBuffers amx_buffers;
    if (amx) amx_begin_thread();
#pragma omp for schedule(dynamic)
    for (int64_t index = 0; index < count; ++index) {
      const WorkItem& item = items[static_cast<size_t>(index)];
      const Sequence& sequence = problem.sequences[static_cast<size_t>(item.batch_index)];
      KeyGradientSink sink{HeadRows{&problem, &params.dk, Side::key, item.batch_index, item.kv_head,
                                    params.head_dim},
                           HeadRows{&problem, &params.dv, Side::key, item.batch_index, item.kv_head,
                                    params.head_dim_v}};
      if (slices > 1) {
        std::vector<float>& dk = partial_dk[static_cast<size_t>(index)];
        std::vector<float>& dv = partial_dv[static_cast<size_t>(index)];
        dk.assign(static_cast<size_t>(sequence.used_k * params.head_dim), 0.0f);
        dv.assign(static_cast<size_t>(sequence.used_k * params.head_dim_v), 0.0f);
        sink.partial = true;
        sink.partial_dk = dk.data();
        sink.partial_dv = dv.data();
      }
      if (amx) {
        backward_item_amx(problem, params, item.batch_index, item.kv_head, item.slice, sink,
                          amx_buffers);
      } else {
        run_item(problem, params, chosen, item.batch_index, item.kv_head, item.slice, sink,
                 buffers);
      }
    }
    if (amx) amx_end_thread();
  }
  if (slices > 1) {
#pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (int64_t pair = 0; pair < pairs; ++pair) {
      const int64_t batch_index = pair / params.heads_kv, kv_head = pair % params.heads_kv;
      std::vector<const float*> dk_parts, dv_parts;
      for (int64_t slice = 0; slice < slices; ++slice) {
        dk_parts.push_back(partial_dk[static_cast<size_t>(pair * slices + slice)].data());
        dv_parts.push_back(partial_dv[static_cast<size_t>(pair * slices + slice)].data());
      }
      sum_slices(
          problem.sequences[static_cast<size_t>(batch_index)], dk_parts, dv_parts,
          HeadRows{&problem, &params.dk, Side::key, batch_index, kv_head, params.head_dim},
          HeadRows{&problem, &params.dv, Side::key, batch_index, kv_head, params.head_dim_v});
    }
  }
  return Status::Ok();
}

}  // namespace flashattn::cpu_tiled
