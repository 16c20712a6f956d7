// Host buffers, strides and params of one test problem.
#include "support/host_problem.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <utility>

#include "cpu/element.h"

namespace flashattn::testing {
namespace {

// splitmix64: a small, well-mixed generator; reproducible on every platform (unlike
// std::normal_distribution, whose algorithm is implementation-defined).
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1): never 0, so the logarithm below is finite.
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }
  // Box-Muller; one value per call is plenty for test sizes.
  double normal() {
    return std::sqrt(-2.0 * std::log(uniform())) * std::cos(2.0 * std::numbers::pi * uniform());
  }

 private:
  uint64_t state_;
};

// Where the elements of one strided operand lie. Varlen operands have one "batch" of
// `rows` = total tokens.
struct Geometry {
  int64_t batches = 0, rows = 0, heads = 0, dim = 0;
  TensorRef strides;     // data left null
  int64_t elements = 0;  // allocation, gaps included

  template <typename Visit>
  void for_each_logical(Visit&& visit) const {
    for (int64_t b = 0; b < batches; ++b) {
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t h = 0; h < heads; ++h) {
          const int64_t base =
              b * strides.batch_stride + r * strides.row_stride + h * strides.head_stride;
          for (int64_t d = 0; d < dim; ++d) visit(base + d);
        }
      }
    }
  }
};

Geometry make_geometry(Layout layout, bool varlen, int64_t batch, int64_t rows, int64_t heads,
                       int64_t dim) {
  Geometry geometry{varlen ? 1 : batch, rows, heads, dim, {}, 0};
  TensorRef& s = geometry.strides;
  switch (layout) {
    case Layout::contiguous:
      s.head_stride = dim;
      s.row_stride = heads * dim;
      s.batch_stride = rows * s.row_stride;
      break;
    case Layout::padded:  // odd gaps so that no stride is a multiple of another by accident
      s.head_stride = dim + 3;
      s.row_stride = heads * s.head_stride + 5;
      s.batch_stride = rows * s.row_stride + 7;
      break;
    case Layout::heads_major:
      s.row_stride = dim;
      s.head_stride = rows * dim;
      s.batch_stride = heads * s.head_stride;
      break;
  }
  geometry.elements = std::max<int64_t>(1, geometry.batches * s.batch_stride);
  if (varlen) s.batch_stride = 0;  // ignored for packed operands
  return geometry;
}

// LSE: the zero-stride shorthand for contiguous and heads_major layouts, explicit padded
// strides for Layout::padded.
struct LseGeometry {
  LseRef strides;            // as given to the params (zeros: contiguous shorthand)
  int64_t batch_stride = 0;  // resolved
  int64_t head_stride = 0;
  int64_t batches = 0, heads = 0, rows = 0;
  int64_t elements = 0;
};

LseGeometry make_lse_geometry(Layout layout, bool varlen, int64_t batch, int64_t heads,
                              int64_t rows) {
  LseGeometry geometry;
  geometry.batches = varlen ? 1 : batch;
  geometry.heads = heads;
  geometry.rows = rows;
  const bool padded = layout == Layout::padded;
  geometry.head_stride = padded ? rows + 3 : rows;
  geometry.batch_stride = varlen ? 0 : heads * geometry.head_stride + (padded ? 1 : 0);
  geometry.elements =
      std::max<int64_t>(1, varlen ? heads * geometry.head_stride : batch * geometry.batch_stride);
  if (padded) {
    geometry.strides.head_stride = geometry.head_stride;
    geometry.strides.batch_stride = geometry.batch_stride;
  }
  return geometry;
}

struct CaseGeometry {
  Geometry q, k, v, out;
  LseGeometry lse;
};

CaseGeometry case_geometry(const AttentionCase& config) {
  const bool varlen = config.is_varlen();
  const int64_t batch = config.effective_batch();
  int64_t rows_q = config.max_seqlen_q(), rows_k = config.max_seqlen_k();
  if (varlen) {
    rows_q = rows_k = 0;
    for (const auto& [len_q, len_k] : config.varlen) {
      rows_q += len_q;
      rows_k += len_k;
    }
  }
  CaseGeometry geometry;
  geometry.q = make_geometry(config.layout, varlen, batch, rows_q, config.heads_q, config.head_dim);
  geometry.k =
      make_geometry(config.layout, varlen, batch, rows_k, config.heads_kv, config.head_dim);
  geometry.v =
      make_geometry(config.layout, varlen, batch, rows_k, config.heads_kv, config.value_dim());
  geometry.out =
      make_geometry(config.layout, varlen, batch, rows_q, config.heads_q, config.value_dim());
  geometry.lse = make_lse_geometry(config.layout, varlen, batch, config.heads_q, rows_q);
  return geometry;
}

const Geometry* tensor_geometry(const CaseGeometry& geometry, BufferId id) {
  switch (id) {
    case BufferId::q:
    case BufferId::dq: return &geometry.q;
    case BufferId::k:
    case BufferId::dk: return &geometry.k;
    case BufferId::v:
    case BufferId::dv: return &geometry.v;
    case BufferId::out:
    case BufferId::dout: return &geometry.out;
    default: return nullptr;
  }
}

// Fills the logical elements of a strided operand with N(0, 1) values in `dtype`; the gaps
// keep the poison (NaN), so a backend that reads them produces NaN.
void fill_normal(std::vector<std::byte>* buffer, const Geometry& geometry, DType dtype,
                 Random* random) {
  std::fill(buffer->begin(), buffer->end(), kPoisonByte);
  geometry.for_each_logical([&](int64_t offset) {
    cpu::store_from_float(buffer->data(), offset, dtype, static_cast<float>(random->normal()));
  });
}

template <typename T>
std::vector<std::byte> to_bytes(const std::vector<T>& values) {
  std::vector<std::byte> bytes(values.size() * sizeof(T));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

std::vector<std::byte> poisoned(int64_t bytes) {
  return std::vector<std::byte>(static_cast<size_t>(bytes), kPoisonByte);
}

}  // namespace

const char* buffer_name(BufferId id) {
  switch (id) {
    case BufferId::q: return "q";
    case BufferId::k: return "k";
    case BufferId::v: return "v";
    case BufferId::out: return "out";
    case BufferId::lse: return "lse";
    case BufferId::dout: return "dout";
    case BufferId::dq: return "dq";
    case BufferId::dk: return "dk";
    case BufferId::dv: return "dv";
    case BufferId::cu_seqlens_q: return "cu_seqlens_q";
    case BufferId::cu_seqlens_k: return "cu_seqlens_k";
    case BufferId::seqused_k: return "seqused_k";
    case BufferId::alibi_slopes: return "alibi_slopes";
    case BufferId::dropout_mask: return "dropout_mask";
  }
  return "unknown-buffer";
}

bool is_output(BufferId id) {
  switch (id) {
    case BufferId::out:
    case BufferId::lse:
    case BufferId::dq:
    case BufferId::dk:
    case BufferId::dv:
    case BufferId::dropout_mask: return true;
    default: return false;
  }
}

HostProblem make_problem(const AttentionCase& config, uint64_t seed) {
  return HostProblem(config, seed);
}

HostProblem::HostProblem(AttentionCase config, uint64_t seed)
    : config_(std::move(config)), seed_(seed) {
  fill_buffers();
}

void HostProblem::fill_buffers() {
  const AttentionCase& c = config_;
  const CaseGeometry geometry = case_geometry(c);
  const int64_t batch = c.effective_batch();
  const int64_t element = element_size(c.dtype);
  Random random(seed_ * 0x2545F4914F6CDD1Dull + 0x1234567ull);
  auto buffer = [&](BufferId id) -> std::vector<std::byte>& {
    return buffers_[static_cast<int>(id)];
  };

  for (BufferId id : {BufferId::q, BufferId::k, BufferId::v, BufferId::dout}) {
    const Geometry& tensor = *tensor_geometry(geometry, id);
    buffer(id).resize(static_cast<size_t>(tensor.elements * element));
    fill_normal(&buffer(id), tensor, c.dtype, &random);
  }
  for (BufferId id : {BufferId::out, BufferId::dq, BufferId::dk, BufferId::dv}) {
    buffer(id) = poisoned(tensor_geometry(geometry, id)->elements * element);
  }
  buffer(BufferId::lse) = poisoned(geometry.lse.elements * static_cast<int64_t>(sizeof(float)));

  AttentionArgs args;
  args.dtype = c.dtype;
  args.batch = batch;
  args.seqlen_q = c.max_seqlen_q();
  args.seqlen_k = c.max_seqlen_k();
  args.heads_q = c.heads_q;
  args.heads_kv = c.heads_kv;
  args.head_dim = c.head_dim;
  args.head_dim_v = c.head_dim_v;
  args.q = geometry.q.strides;
  args.k = geometry.k.strides;
  args.v = geometry.v.strides;
  args.softmax_scale = c.softmax_scale;
  args.causal = c.causal;
  args.window_left = c.window_left;
  args.window_right = c.window_right;
  args.softcap = c.softcap;

  if (c.is_varlen()) {
    std::vector<int32_t> cu_q{0}, cu_k{0};
    for (const auto& [len_q, len_k] : c.varlen) {
      cu_q.push_back(cu_q.back() + static_cast<int32_t>(len_q));
      cu_k.push_back(cu_k.back() + static_cast<int32_t>(len_k));
    }
    args.total_q = cu_q.back();
    args.total_k = cu_k.back();
    buffer(BufferId::cu_seqlens_q) = to_bytes(cu_q);
    buffer(BufferId::cu_seqlens_k) = to_bytes(cu_k);
  }
  if (c.use_seqused_k) {
    std::vector<int32_t> used(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t len_k = c.is_varlen() ? c.varlen[static_cast<size_t>(b)].second : c.seqlen_k;
      used[static_cast<size_t>(b)] = static_cast<int32_t>(len_k * (b + 1) / (batch + 1));
    }
    buffer(BufferId::seqused_k) = to_bytes(used);
  }
  if (c.alibi != AlibiMode::none) {
    // Geometric slopes as in the ALiBi paper, jittered so that batches and heads differ.
    const bool per_batch = c.alibi == AlibiMode::per_batch_head;
    const int64_t stride = per_batch ? c.heads_q + 1 : 0;  // a gap to catch a wrong stride
    const int64_t rows = per_batch ? batch : 1;
    std::vector<float> slopes(static_cast<size_t>(std::max<int64_t>(1, rows * (c.heads_q + 1))),
                              std::numeric_limits<float>::quiet_NaN());
    for (int64_t b = 0; b < rows; ++b) {
      for (int64_t h = 0; h < c.heads_q; ++h) {
        const double base = std::exp2(-8.0 * static_cast<double>(h + 1) / c.heads_q);
        slopes[static_cast<size_t>(b * stride + h)] =
            static_cast<float>(base * (0.5 + random.uniform()));
      }
    }
    buffer(BufferId::alibi_slopes) = to_bytes(slopes);
    args.alibi_batch_stride = stride;
  }
  if (c.dropout_p > 0.0f) {
    args.dropout_p = c.dropout_p;
    args.dropout_seed = random.next();
    args.dropout_offset = random.next();  // both halves nonzero: exercises the key folding
    buffer(BufferId::dropout_mask) = poisoned(batch * c.heads_q * args.seqlen_q * args.seqlen_k);
  }

  static_cast<AttentionArgs&>(forward_template_) = args;
  forward_template_.out = geometry.out.strides;
  forward_template_.lse = geometry.lse.strides;
  static_cast<AttentionArgs&>(backward_template_) = args;
  backward_template_.out = geometry.out.strides;
  backward_template_.dout = geometry.out.strides;
  backward_template_.lse = geometry.lse.strides;
  backward_template_.dq = geometry.q.strides;
  backward_template_.dk = geometry.k.strides;
  backward_template_.dv = geometry.v.strides;
}

BufferPointers HostProblem::host_pointers() {
  BufferPointers pointers{};
  for (int i = 0; i < kBufferCount; ++i) {
    pointers[i] = buffers_[i].empty() ? nullptr : buffers_[i].data();
  }
  return pointers;
}

namespace {

void* base(const BufferPointers& bases, BufferId id) {
  return bases[static_cast<int>(id)];
}

void point_args(const BufferPointers& bases, Device device, AttentionArgs* args) {
  args->device = device;
  args->q.data = base(bases, BufferId::q);
  args->k.data = base(bases, BufferId::k);
  args->v.data = base(bases, BufferId::v);
  args->cu_seqlens_q = static_cast<const int32_t*>(base(bases, BufferId::cu_seqlens_q));
  args->cu_seqlens_k = static_cast<const int32_t*>(base(bases, BufferId::cu_seqlens_k));
  args->seqused_k = static_cast<const int32_t*>(base(bases, BufferId::seqused_k));
  args->alibi_slopes = static_cast<const float*>(base(bases, BufferId::alibi_slopes));
}

}  // namespace

ForwardParams HostProblem::forward_params_at(const BufferPointers& bases, Device device) const {
  ForwardParams params = forward_template_;
  point_args(bases, device, &params);
  params.out.data = base(bases, BufferId::out);
  params.lse.data = static_cast<float*>(base(bases, BufferId::lse));
  params.dropout_mask = static_cast<uint8_t*>(base(bases, BufferId::dropout_mask));
  return params;
}

BackwardParams HostProblem::backward_params_at(const BufferPointers& bases, Device device) const {
  BackwardParams params = backward_template_;
  point_args(bases, device, &params);
  params.out.data = base(bases, BufferId::out);
  params.dout.data = base(bases, BufferId::dout);
  params.lse.data = static_cast<float*>(base(bases, BufferId::lse));
  params.dq.data = base(bases, BufferId::dq);
  params.dk.data = base(bases, BufferId::dk);
  params.dv.data = base(bases, BufferId::dv);
  return params;
}

void HostProblem::poison_forward_outputs() {
  for (BufferId id : {BufferId::out, BufferId::lse, BufferId::dropout_mask}) {
    std::fill(buffers_[static_cast<int>(id)].begin(), buffers_[static_cast<int>(id)].end(),
              kPoisonByte);
  }
}

void HostProblem::poison_gradients() {
  for (BufferId id : {BufferId::dq, BufferId::dk, BufferId::dv}) {
    std::fill(buffers_[static_cast<int>(id)].begin(), buffers_[static_cast<int>(id)].end(),
              kPoisonByte);
  }
}

std::vector<bool> HostProblem::logical_elements(BufferId id) const {
  const CaseGeometry geometry = case_geometry(config_);
  if (id == BufferId::lse) {
    const LseGeometry& lse = geometry.lse;
    std::vector<bool> logical(static_cast<size_t>(lse.elements), false);
    for (int64_t b = 0; b < lse.batches; ++b) {
      for (int64_t h = 0; h < lse.heads; ++h) {
        for (int64_t i = 0; i < lse.rows; ++i) {
          logical[static_cast<size_t>(b * lse.batch_stride + h * lse.head_stride + i)] = true;
        }
      }
    }
    return logical;
  }
  const Geometry* tensor = tensor_geometry(geometry, id);
  if (tensor == nullptr) return {};
  std::vector<bool> logical(static_cast<size_t>(tensor->elements), false);
  tensor->for_each_logical([&](int64_t offset) { logical[static_cast<size_t>(offset)] = true; });
  return logical;
}

}  // namespace flashattn::testing
