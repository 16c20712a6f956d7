// FlashAttention-2 forward on the CPU: for each query tile, stream key tiles through an online
// softmax; out and LSE are written once per tile, so memory stays O(seqlen).
//
// Work items are (batch, query head, query tile), handed out dynamically to the OpenMP threads;
// each item is computed by one thread in a fixed order, so results do not depend on the
// schedule. K and V are first packed once per call: to fp32 (K transposed in key tiles) for the
// register-blocked GEMM micro-kernel, or, for bf16 on CPUs with AMX, into the bf16 pair
// layouts of the AMX tile products (amx.h).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "api/backends.h"
#include "cpu/tiled/amx.h"
#include "cpu/tiled/dropout_tile.h"
#include "cpu/tiled/kernels.h"
#include "cpu/tiled/operands.h"
#include "cpu/tiled/packed_bf16.h"
#include "cpu/tiled/problem.h"
#include "cpu/tiled/score_tile.h"

namespace flashattn::cpu_tiled {
namespace {

// K and V of every (sequence, kv head), key counts rounded up to whole tiles, in the layout
// of the tile products: fp32 copies (K as transposed key tiles [dim][kKeyTile], V as rows), or
// with AMX bf16 pairs (packed_bf16.h) with head dims padded to dim_pad / dim_v_pad.
struct PackedKeys {
  bool amx = false;
  int64_t dim_pad = 0, dim_v_pad = 0;
  std::vector<float> keys_t;
  std::vector<float> values;
  std::vector<uint16_t> keys_bf16;
  std::vector<uint16_t> values_bf16;
  std::vector<int64_t> first_key;  // per sequence: padded keys of the sequences before it

  int64_t slot(const Problem& problem, int64_t batch_index, int64_t kv_head) const {
    const Sequence& sequence = problem.sequences[static_cast<size_t>(batch_index)];
    return first_key[static_cast<size_t>(batch_index)] * problem.args->heads_kv +
           kv_head * sequence.key_tiles() * kKeyTile;
  }
};

PackedKeys pack_keys(const Problem& problem, const ForwardParams& params, bool amx, int threads) {
  PackedKeys packed;
  packed.amx = amx;
  packed.dim_pad = padded_dim(params.head_dim);
  packed.dim_v_pad = padded_dim(params.head_dim_v);
  const int64_t batch = params.batch;
  packed.first_key.resize(static_cast<size_t>(batch) + 1, 0);
  for (int64_t b = 0; b < batch; ++b) {
    packed.first_key[b + 1] =
        packed.first_key[b] + problem.sequences[static_cast<size_t>(b)].key_tiles() * kKeyTile;
  }
  const int64_t total = packed.first_key[static_cast<size_t>(batch)] * params.heads_kv;
  if (amx) {
    packed.keys_bf16.resize(static_cast<size_t>(total * packed.dim_pad));
    packed.values_bf16.resize(static_cast<size_t>(total * packed.dim_v_pad));
  } else {
    packed.keys_t.resize(static_cast<size_t>(total * params.head_dim));
    packed.values.resize(static_cast<size_t>(total * params.head_dim_v));
  }
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t item = 0; item < batch * params.heads_kv; ++item) {
    const int64_t b = item / params.heads_kv, kv_head = item % params.heads_kv;
    const int64_t used = problem.sequences[static_cast<size_t>(b)].used_k;
    const int64_t slot = packed.slot(problem, b, kv_head);
    const HeadRows keys{&problem, &params.k, Side::key, b, kv_head, params.head_dim};
    const HeadRows values{&problem, &params.v, Side::key, b, kv_head, params.head_dim_v};
    if (amx) {
      pack_key_tiles_bf16(keys, used, packed.dim_pad,
                          packed.keys_bf16.data() + slot * packed.dim_pad);
      pack_value_tiles_bf16(values, used, packed.dim_v_pad,
                            packed.values_bf16.data() + slot * packed.dim_v_pad);
    } else {
      gather_transposed_tiles(keys, used, packed.keys_t.data() + slot * params.head_dim);
      gather_rows(values, 0, used, packed.values.data() + slot * params.head_dim_v,
                  params.head_dim_v);
    }
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

// Key tiles per step of the AMX path: more keys per step mean fewer loads and stores of the
// fp32 output tiles in the P.V products and less softmax bookkeeping per key, at the price of a
// larger score tile (64 x 256 fp32 is 64 KiB, past L1). Four pay off where the output tile is
// large (d 128: s1024 fwd -15-20% against two), two stay better for d 64 (see bench/NOTES.md).
int64_t amx_key_tiles(int64_t dim_v_pad) {
  return dim_v_pad >= 128 ? 4 : 2;
}

// Per-thread tiles of one query tile. out has out_ld columns: head_dim_v, or dim_v_pad for the
// AMX products (which also need the query and the probabilities in bf16). The AMX path takes
// amx_key_tiles key tiles per step (score_ld that many kKeyTile).
struct Scratch {
  int64_t out_ld;
  int64_t score_ld;
  std::vector<float> query, scores, out, row_max, row_sum, keep;
  std::vector<uint16_t> query_bf16, probs_bf16;
  Scratch(const PackedKeys& packed, int64_t dim, int64_t dim_v)
      : out_ld(packed.amx ? packed.dim_v_pad : dim_v),
        score_ld(packed.amx ? amx_key_tiles(packed.dim_v_pad) * kKeyTile : kKeyTile),
        query(packed.amx ? 0 : kQueryTile * dim),
        scores(kQueryTile * score_ld),
        out(kQueryTile * out_ld),
        row_max(kQueryTile),
        row_sum(kQueryTile),
        keep(score_ld),
        query_bf16(packed.amx ? kQueryTile * packed.dim_pad : 0),
        probs_bf16(packed.amx ? kQueryTile * score_ld : 0) {}
};

// Online softmax over one score tile (FlashAttention-2): updates the running max and sum of
// each row, rescales its output row, and leaves P (dropped and rescaled under dropout) in the
// tile for the P.V product.
void softmax_tile(const ForwardParams& params, const Kernels& kernels, const ScoreContext& context,
                  const WorkItem& item, int64_t rows, int64_t col0, int64_t cols,
                  Scratch& scratch) {
  const float exp_scale = context.exp_scale();
  const bool dropout = params.dropout_p > 0.0f;
  const DropoutSpec dropout_spec = make_dropout_spec(params);
  const uint32_t batch_head = static_cast<uint32_t>(item.batch_index * params.heads_q + item.head);
  float* scores = scratch.scores.data();
  // Without dropout the AMX product takes P straight from the softmax, in bf16.
  uint16_t* probs_bf16 =
      !dropout && !scratch.probs_bf16.empty() ? scratch.probs_bf16.data() : nullptr;
  kernels.softmax_rows(scores, scratch.score_ld, rows, cols, exp_scale, scratch.row_max.data(),
                       scratch.row_sum.data(), scratch.out.data(), scratch.out_ld,
                       params.head_dim_v, probs_bf16);
  if (!dropout) return;
  // The softmax sums above use the undropped probabilities; only P.V sees the dropout.
  for (int64_t r = 0; r < rows; ++r) {
    float* row_scores = scores + r * scratch.score_ld;
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
  const int64_t out_ld = scratch.out_ld;
  float* scores = scratch.scores.data();
  float* out = scratch.out.data();
  const HeadRows query_rows{&problem, &params.q, Side::query, item.batch_index, item.head, dim};
  if (packed.amx) {
    gather_rows_bf16(query_rows, item.row0, rows, kQueryTile, packed.dim_pad,
                     scratch.query_bf16.data());
  } else {
    gather_rows(query_rows, item.row0, rows, scratch.query.data(), dim);
  }
  std::fill(scratch.out.begin(), scratch.out.end(), 0.0f);
  std::fill(scratch.row_max.begin(), scratch.row_max.end(), -kInfinity);
  std::fill(scratch.row_sum.begin(), scratch.row_sum.end(), 0.0f);

  const int64_t slot = packed.slot(problem, item.batch_index, kv_head);
  const ColumnRange visible = visible_columns(context.mask, item.row0, rows);
  const int64_t ld = scratch.score_ld;
  const int64_t step = ld;  // keys per step: one key tile, amx_key_tiles with AMX
  // The AMX steps stop at the last key tile with a visible column (causal rows see only part of
  // a multi-tile step) and at the end of the packed keys.
  const int64_t key_end =
      std::min(sequence.key_tiles(), (visible.last + kKeyTile - 1) / kKeyTile) * kKeyTile;
  for (int64_t col0 = visible.first / kKeyTile * kKeyTile; col0 < visible.last; col0 += step) {
    const int64_t keys = std::min(step, key_end - col0);  // whole tiles, packed one after another
    const int64_t cols = std::min(keys, sequence.used_k - col0);
    if (packed.amx) {
      for (int64_t tile = 0; tile * kKeyTile < keys; ++tile) {
        amx_scores(scratch.query_bf16.data(),
                   packed.keys_bf16.data() + (slot + col0 + tile * kKeyTile) * packed.dim_pad,
                   packed.dim_pad, scores + tile * kKeyTile, ld);
      }
    } else {
      kernels.gemm(rows, cols, dim, scratch.query.data(), dim, 1,
                   packed.keys_t.data() + (slot + col0) * dim, kKeyTile, scores, ld, false);
    }
    if (!context.folds_scale() || !fully_visible(context.mask, item.row0, rows, col0, cols)) {
      finish_scores(context, item.row0, rows, col0, cols, scores, ld, nullptr);
    }
    softmax_tile(params, kernels, context, item, rows, col0, cols, scratch);
    if (packed.amx) {
      // P goes to bf16 for the tile product (as FlashAttention-2 does on GPUs); softmax_tile
      // wrote it already unless dropout changed it since. Columns past cols keep finite values
      // of earlier steps; they meet the zero padding of the values.
      if (params.dropout_p > 0.0f) {
        for (int64_t r = 0; r < rows; ++r) {
          convert_to_bf16(scores + r * ld, cols, scratch.probs_bf16.data() + r * ld);
        }
      }
      if (keys < ld) {
        // Fewer tiles this step: the product wants their probabilities as rows of `keys`
        // (each row moves down, never over a row not yet moved).
        for (int64_t r = 1; r < kQueryTile; ++r) {
          std::copy_n(scratch.probs_bf16.data() + r * ld, keys,
                      scratch.probs_bf16.data() + r * keys);
        }
      }
      amx_accumulate(scratch.probs_bf16.data(), kQueryTile, keys,
                     packed.values_bf16.data() + (slot + col0) * packed.dim_v_pad,
                     packed.dim_v_pad, out, packed.dim_v_pad);
    } else {
      kernels.gemm(rows, dim_v, cols, scores, ld, 1, packed.values.data() + (slot + col0) * dim_v,
                   dim_v, out, out_ld, true);
    }
  }

  for (int64_t r = 0; r < rows; ++r) {
    float* out_row = out + r * out_ld;
    const float row_sum = scratch.row_sum[r];
    const bool sees_keys = row_sum > 0.0f;
    const float inverse = sees_keys ? 1.0f / row_sum : 0.0f;
    for (int64_t d = 0; d < dim_v; ++d) out_row[d] *= inverse;
    if (params.lse.data != nullptr) {
      params.lse.data[problem.lse_offset(params.lse, item.batch_index, item.head, item.row0 + r)] =
          sees_keys ? scratch.row_max[r] + std::log(row_sum) : kInfinity;
    }
  }
  scatter_rows(HeadRows{&problem, &params.out, Side::query, item.batch_index, item.head, dim_v},
               item.row0, rows, out, out_ld);
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
  // bf16 runs on AMX tile products where the CPU has them; everything else on fp32 tiles.
  const bool amx = params.dtype == DType::bf16 && amx_bf16_available();
  const PackedKeys packed = pack_keys(problem, params, amx, threads);
  const std::vector<WorkItem> items = work_items(problem, params);
  const int64_t count = static_cast<int64_t>(items.size());
#pragma omp parallel num_threads(threads)
  {
    Scratch scratch(packed, params.head_dim, params.head_dim_v);
    if (amx) amx_begin_thread();
#pragma omp for schedule(dynamic)
    for (int64_t index = 0; index < count; ++index) {
      run_item(problem, params, packed, chosen, items[static_cast<size_t>(index)], scratch);
    }
    if (amx) amx_end_thread();
  }
  return Status::Ok();
}

}  // namespace flashattn::cpu_tiled
