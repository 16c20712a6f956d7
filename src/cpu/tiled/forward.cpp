// FlashAttention-2 forward on the CPU: for each query tile, stream key tiles through an online
// softmax; out and LSE are written once per tile, so memory stays O(seqlen).
//
// Work items are (batch, query head, query tile), handed out dynamically to the OpenMP threads;
// each item is computed by one thread in a fixed order, so results do not depend on the
// schedule. K and V are first converted once to fp32 (K transposed in key tiles), which makes
// every inner product a call of the register-blocked GEMM micro-kernel.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "api/backends.h"
#include "cpu/tiled/dropout_tile.h"
#include "cpu/tiled/kernels.h"
#include "cpu/tiled/operands.h"
#include "cpu/tiled/problem.h"
#include "cpu/tiled/score_tile.h"

namespace flashattn::cpu_tiled {
namespace {

// fp32 copies of K (transposed key tiles, [dim][kKeyTile] each) and V (rows) for every
// (sequence, kv head); key counts rounded up to whole tiles.
struct PackedKeys {
  std::vector<float> keys_t;
  std::vector<float> values;
  std::vector<int64_t> first_key;  // per sequence: padded keys of the sequences before it

  int64_t slot(const Problem& problem, int64_t batch_index, int64_t kv_head) const {
    const Sequence& sequence = problem.sequences[static_cast<size_t>(batch_index)];
    return first_key[static_cast<size_t>(batch_index)] * problem.args->heads_kv +
           kv_head * sequence.key_tiles() * kKeyTile;
  }
};

PackedKeys pack_keys(const Problem& problem, const ForwardParams& params, int threads) {
  PackedKeys packed;
  const int64_t batch = params.batch;
  packed.first_key.resize(static_cast<size_t>(batch) + 1, 0);
  for (int64_t b = 0; b < batch; ++b) {
    packed.first_key[b + 1] =
        packed.first_key[b] + problem.sequences[static_cast<size_t>(b)].key_tiles() * kKeyTile;
  }
  const int64_t total = packed.first_key[static_cast<size_t>(batch)] * params.heads_kv;
  packed.keys_t.resize(static_cast<size_t>(total * params.head_dim));
  packed.values.resize(static_cast<size_t>(total * params.head_dim_v));
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t item = 0; item < batch * params.heads_kv; ++item) {
    const int64_t b = item / params.heads_kv, kv_head = item % params.heads_kv;
    const int64_t used = problem.sequences[static_cast<size_t>(b)].used_k;
    const int64_t slot = packed.slot(problem, b, kv_head);
    gather_transposed_tiles(HeadRows{&problem, &params.k, Side::key, b, kv_head, params.head_dim},
                            used, packed.keys_t.data() + slot * params.head_dim);
    gather_rows(HeadRows{&problem, &params.v, Side::key, b, kv_head, params.head_dim_v}, 0, used,
                packed.values.data() + slot * params.head_dim_v, params.head_dim_v);
  }
  return packed;
}

struct WorkItem {
  int64_t batch_index;
  int64_t head;
  int64_t row0;
};

// Causal and local items differ in cost; the last query tiles see the most keys, so they go
// first and the dynamic schedule fills in with the cheap ones.
std::vector<WorkItem> work_items(const Problem& problem, const ForwardParams& params) {
  std::vector<WorkItem> items;
  int64_t max_tiles = 0;
  for (const Sequence& sequence : problem.sequences) {
    max_tiles = std::max(max_tiles, (sequence.len_q + kQueryTile - 1) / kQueryTile);
  }
  for (int64_t tile = max_tiles - 1; tile >= 0; --tile) {
    for (int64_t b = 0; b < params.batch; ++b) {
      if (tile * kQueryTile >= problem.sequences[static_cast<size_t>(b)].len_q) continue;
      for (int64_t head = 0; head < params.heads_q; ++head) {
        items.push_back(WorkItem{b, head, tile * kQueryTile});
      }
    }
  }
  return items;
}

// Per-thread tiles of one query tile.
struct Scratch {
  std::vector<float> query, scores, out, row_max, row_sum, keep;
  Scratch(int64_t dim, int64_t dim_v)
      : query(kQueryTile * dim),
        scores(kQueryTile * kKeyTile),
        out(kQueryTile * dim_v),
        row_max(kQueryTile),
        row_sum(kQueryTile),
        keep(kKeyTile) {}
};

void run_item(const Problem& problem, const ForwardParams& params, const PackedKeys& packed,
              const Kernels& kernels, const WorkItem& item, Scratch& scratch) {
  constexpr float kInfinity = std::numeric_limits<float>::infinity();
  const int64_t dim = params.head_dim, dim_v = params.head_dim_v;
  const Sequence& sequence = problem.sequences[static_cast<size_t>(item.batch_index)];
  const int64_t rows = std::min(kQueryTile, sequence.len_q - item.row0);
  const int64_t kv_head = item.head / problem.group;
  const ScoreContext context{problem.mask(sequence), params.softmax_scale, params.softcap,
                             problem.alibi_slope(item.batch_index, item.head),
                             params.alibi_slopes != nullptr};
  const float exp_scale = context.exp_scale();
  const bool dropout = params.dropout_p > 0.0f;
  const DropoutSpec dropout_spec = make_dropout_spec(params);
  const uint32_t batch_head = static_cast<uint32_t>(item.batch_index * params.heads_q + item.head);

  float* query = scratch.query.data();
  float* scores = scratch.scores.data();
  float* out = scratch.out.data();
  float* row_max = scratch.row_max.data();
  float* row_sum = scratch.row_sum.data();
  gather_rows(HeadRows{&problem, &params.q, Side::query, item.batch_index, item.head, dim},
              item.row0, rows, query, dim);
  std::fill(out, out + rows * dim_v, 0.0f);
  std::fill(row_max, row_max + rows, -kInfinity);
  std::fill(row_sum, row_sum + rows, 0.0f);

  const int64_t slot = packed.slot(problem, item.batch_index, kv_head);
  const ColumnRange visible = visible_columns(context.mask, item.row0, rows);
  for (int64_t col0 = visible.first / kKeyTile * kKeyTile; col0 < visible.last; col0 += kKeyTile) {
    const int64_t cols = std::min(kKeyTile, sequence.used_k - col0);
    const float* keys_t = packed.keys_t.data() + (slot + col0) * dim;  // tile col0 / kKeyTile
    const float* values = packed.values.data() + (slot + col0) * dim_v;
    kernels.gemm(rows, cols, dim, query, dim, 1, keys_t, kKeyTile, scores, kKeyTile, false);
    finish_scores(context, item.row0, rows, col0, cols, scores, kKeyTile, nullptr);
    for (int64_t r = 0; r < rows; ++r) {
      float* row_scores = scores + r * kKeyTile;
      // exp_scale > 0 commutes with the max (rounding is monotonic): no scaled copy needed.
      const float tile_max = kernels.row_max(row_scores, cols) * exp_scale;
      const float new_max = std::max(row_max[r], tile_max);
      if (new_max == -kInfinity) {  // nothing visible in this row yet
        std::fill(row_scores, row_scores + cols, 0.0f);
        continue;
      }
      const float correction = std::exp(row_max[r] - new_max);  // 0 on the first visible tile
      row_sum[r] =
          row_sum[r] * correction + kernels.exp_shifted(row_scores, cols, exp_scale, new_max);
      row_max[r] = new_max;
      if (correction != 1.0f) {
        float* out_row = out + r * dim_v;
        for (int64_t d = 0; d < dim_v; ++d) out_row[d] *= correction;
      }
      if (dropout) {
        // The softmax sum above uses the undropped probabilities; only P.V sees the dropout.
        const int64_t row = item.row0 + r;
        float* keep = scratch.keep.data();
        dropout_factors(dropout_spec, batch_head, row, col0, cols, keep);
        for (int64_t j = 0; j < cols; ++j) row_scores[j] *= keep[j];
        if (params.dropout_mask != nullptr) {
          uint8_t* mask_row =
              params.dropout_mask +
              (static_cast<int64_t>(batch_head) * params.seqlen_q + row) * params.seqlen_k;
          const int64_t first = std::max(context.mask.first_col(row), col0);
          const int64_t last = std::min(context.mask.last_col(row), col0 + cols);
          for (int64_t col = first; col < last; ++col) {
            mask_row[col] = keep[col - col0] != 0.0f ? 1 : 0;
          }
        }
      }
    }
    kernels.gemm(rows, dim_v, cols, scores, kKeyTile, 1, values, dim_v, out, dim_v, true);
  }

  for (int64_t r = 0; r < rows; ++r) {
    float* out_row = out + r * dim_v;
    const bool sees_keys = row_sum[r] > 0.0f;
    const float inverse = sees_keys ? 1.0f / row_sum[r] : 0.0f;
    for (int64_t d = 0; d < dim_v; ++d) out_row[d] *= inverse;
    if (params.lse.data != nullptr) {
      params.lse.data[problem.lse_offset(params.lse, item.batch_index, item.head, item.row0 + r)] =
          sees_keys ? row_max[r] + std::log(row_sum[r]) : kInfinity;
    }
  }
  scatter_rows(HeadRows{&problem, &params.out, Side::query, item.batch_index, item.head, dim_v},
               item.row0, rows, out, dim_v);
}

}  // namespace

Status forward(const ForwardParams& params) {
  const Problem problem = make_problem(params);
  const int threads = thread_count(params);
  const Kernels& chosen = kernels();
  if (params.dropout_p > 0.0f && params.dropout_mask != nullptr) {
    // Masked and out-of-sequence elements read 0; the items write the visible ones.
    const int64_t rows = params.batch * params.heads_q * params.seqlen_q;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t row = 0; row < rows; ++row) {
      std::memset(params.dropout_mask + row * params.seqlen_k, 0,
                  static_cast<size_t>(params.seqlen_k));
    }
  }
  const PackedKeys packed = pack_keys(problem, params, threads);
  const std::vector<WorkItem> items = work_items(problem, params);
  const int64_t count = static_cast<int64_t>(items.size());
#pragma omp parallel num_threads(threads)
  {
    Scratch scratch(params.head_dim, params.head_dim_v);
#pragma omp for schedule(dynamic)
    for (int64_t index = 0; index < count; ++index) {
      run_item(problem, params, packed, chosen, items[static_cast<size_t>(index)], scratch);
    }
  }
  return Status::Ok();
}

}  // namespace flashattn::cpu_tiled
