// A tiny C ABI over flashattn::forward and flashattn::backward for bench/gpu_forward.py and
// bench/gpu_backward.py (ctypes): dense [batch, seqlen, heads, dim] tensors given by pointer and
// element strides, on a given stream.
#include <cstdint>
#include <cstring>

#include "flashattn/flashattn.h"

namespace {

// The score modifiers of the following calls (flashattn_bench_set_extras): with any of them
// the extras kernels run, which the plain FA2 grid never reaches.
struct Extras {
  float softcap = 0.0f;
  float dropout_p = 0.0f;
  uint64_t dropout_seed = 0;
};
Extras g_extras;

flashattn::TensorRef tensor_ref(void* data, const int64_t* strides) {
  return flashattn::TensorRef{data, strides[0], strides[1], strides[2], 1};
}

// The problem's sizes and options, shared by the forward and the backward entry points.
void fill_args(flashattn::AttentionArgs& args, int dtype, int64_t batch, int64_t seqlen_q,
               int64_t seqlen_k, int64_t heads_q, int64_t heads_kv, int64_t head_dim, void* q,
               const int64_t* q_strides, void* k, const int64_t* k_strides, void* v,
               const int64_t* v_strides, int causal, float softmax_scale, void* stream) {
  args.device = flashattn::Device::cuda;
  args.backend = flashattn::Backend::cuda_sm80;
  args.dtype = dtype == 0 ? flashattn::DType::fp16 : flashattn::DType::bf16;
  args.batch = batch;
  args.seqlen_q = seqlen_q;
  args.seqlen_k = seqlen_k;
  args.heads_q = heads_q;
  args.heads_kv = heads_kv;
  args.head_dim = head_dim;
  args.q = tensor_ref(q, q_strides);
  args.k = tensor_ref(k, k_strides);
  args.v = tensor_ref(v, v_strides);
  args.causal = causal != 0;
  if (softmax_scale > 0) args.softmax_scale = softmax_scale;
  args.softcap = g_extras.softcap;
  args.dropout_p = g_extras.dropout_p;
  args.dropout_seed = g_extras.dropout_seed;
  args.stream = stream;
}

int report(const flashattn::Status& status, char* error, int error_bytes) {
  if (!status.ok() && error != nullptr && error_bytes > 0) {
    std::strncpy(error, status.message().c_str(), error_bytes - 1);
    error[error_bytes - 1] = '\0';
  }
  return static_cast<int>(status.code());
}

}  // namespace

extern "C" {

// Softcap and dropout for every later forward and backward call of this shim (0: off).
void flashattn_bench_set_extras(float softcap, float dropout_p, uint64_t dropout_seed) {
  g_extras = Extras{softcap, dropout_p, dropout_seed};
}

// strides: {batch, row, head} in elements for q, k, v, out (last dim contiguous).
// dtype: 0 fp16, 1 bf16. Returns 0 on success, else the StatusCode with the message in error.
int flashattn_bench_forward(int dtype, int64_t batch, int64_t seqlen_q, int64_t seqlen_k,
                            int64_t heads_q, int64_t heads_kv, int64_t head_dim, void* q,
                            const int64_t* q_strides, void* k, const int64_t* k_strides, void* v,
                            const int64_t* v_strides, void* out, const int64_t* out_strides,
                            float* lse, int causal, float softmax_scale, void* stream, char* error,
                            int error_bytes) {
  flashattn::ForwardParams params;
  fill_args(params, dtype, batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim, q, q_strides,
            k, k_strides, v, v_strides, causal, softmax_scale, stream);
  params.out = tensor_ref(out, out_strides);
  params.lse.data = lse;
  return report(flashattn::forward(params), error, error_bytes);
}

// Gradients dq, dk, dv from q, k, v, the forward's out and lse (contiguous [batch, heads_q,
// seqlen_q]) and dout; strides as above for every tensor. deterministic != 0 asks for the
// bitwise reproducible path. Workspace, as the caller's allocator would hand it over:
//   workspace null, workspace_bytes non-null: only writes the bytes needed, runs nothing;
//   workspace non-null: uses *workspace_bytes bytes there;
//   both null: the library allocates (and frees) its own.
int flashattn_bench_backward(int dtype, int64_t batch, int64_t seqlen_q, int64_t seqlen_k,
                             int64_t heads_q, int64_t heads_kv, int64_t head_dim, void* q,
                             const int64_t* q_strides, void* k, const int64_t* k_strides,
                             void* v, const int64_t* v_strides, void* out,
                             const int64_t* out_strides, void* dout, const int64_t* dout_strides,
                             float* lse, void* dq, const int64_t* dq_strides, void* dk,
                             const int64_t* dk_strides, void* dv, const int64_t* dv_strides,
                             int causal, float softmax_scale, int deterministic,
                             void* workspace, uint64_t* workspace_bytes, void* stream,
                             char* error, int error_bytes) {
  flashattn::BackwardParams params;
  fill_args(params, dtype, batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim, q, q_strides,
            k, k_strides, v, v_strides, causal, softmax_scale, stream);
  params.out = tensor_ref(out, out_strides);
  params.dout = tensor_ref(dout, dout_strides);
  params.lse.data = lse;
  params.dq = tensor_ref(dq, dq_strides);
  params.dk = tensor_ref(dk, dk_strides);
  params.dv = tensor_ref(dv, dv_strides);
  params.deterministic = deterministic != 0;
  if (workspace == nullptr && workspace_bytes != nullptr) {
    size_t bytes = 0;
    const flashattn::Status status = flashattn::backward_workspace_size(params, &bytes);
    *workspace_bytes = bytes;
    return report(status, error, error_bytes);
  }
  if (workspace != nullptr) {
    params.workspace = workspace;
    params.workspace_bytes = workspace_bytes != nullptr ? *workspace_bytes : 0;
  }
  return report(flashattn::backward(params), error, error_bytes);
}

}  // extern "C"
