// Problem + Tensors -> the library's ForwardParams / BackwardParams.
#include "attention_params.h"

namespace flashattn::cli {
namespace {

// A contiguous [batch, seqlen, heads, dim] (or packed [total, heads, dim]) operand.
TensorRef contiguous(const Buffer& buffer, const Problem& problem, int64_t seqlen, int64_t heads,
                     int64_t dim) {
  TensorRef ref;
  ref.data = buffer.data();
  ref.head_stride = dim;
  ref.row_stride = heads * dim;
  ref.batch_stride = problem.varlen() ? 0 : seqlen * heads * dim;
  return ref;
}

void fill_args(const Problem& problem, const Tensors& tensors, AttentionArgs* args) {
  args->device = tensors.q.device();
  args->backend = problem.backend;
  args->dtype = problem.dtype;
  args->batch = problem.batch;
  args->seqlen_q = problem.seqlen_q;
  args->seqlen_k = problem.seqlen_k;
  args->heads_q = problem.heads_q;
  args->heads_kv = problem.heads_kv;
  args->head_dim = problem.head_dim;
  args->head_dim_v = problem.head_dim_v;
  args->q = contiguous(tensors.q, problem, problem.seqlen_q, problem.heads_q, problem.head_dim);
  args->k = contiguous(tensors.k, problem, problem.seqlen_k, problem.heads_kv, problem.head_dim);
  args->v = contiguous(tensors.v, problem, problem.seqlen_k, problem.heads_kv, problem.head_dim_v);
  if (problem.varlen()) {
    args->cu_seqlens_q = static_cast<const int32_t*>(tensors.cu_seqlens_q.data());
    args->cu_seqlens_k = static_cast<const int32_t*>(tensors.cu_seqlens_k.data());
    args->total_q = problem.total_q();
    args->total_k = problem.total_k();
  }
  args->softmax_scale = problem.softmax_scale;
  args->causal = problem.causal;
  args->window_left = problem.window_left;
  args->window_right = problem.window_right;
  args->softcap = problem.softcap;
  args->alibi_slopes = static_cast<const float*>(tensors.alibi_slopes.data());
  args->dropout_p = problem.dropout_p;
  args->dropout_seed = problem.seed;
  args->dropout_offset = problem.offset;
  args->num_threads = problem.threads;
}

}  // namespace

ForwardParams forward_params(const Problem& problem, const Tensors& tensors) {
  ForwardParams params;
  fill_args(problem, tensors, &params);
  params.out =
      contiguous(tensors.out, problem, problem.seqlen_q, problem.heads_q, problem.head_dim_v);
  params.lse.data = static_cast<float*>(tensors.lse.data());  // zero strides: contiguous
  return params;
}

BackwardParams backward_params(const Problem& problem, const Tensors& tensors) {
  BackwardParams params;
  fill_args(problem, tensors, &params);
  params.out =
      contiguous(tensors.out, problem, problem.seqlen_q, problem.heads_q, problem.head_dim_v);
  params.dout =
      contiguous(tensors.dout, problem, problem.seqlen_q, problem.heads_q, problem.head_dim_v);
  params.lse.data = static_cast<float*>(tensors.lse.data());
  params.dq = contiguous(tensors.dq, problem, problem.seqlen_q, problem.heads_q, problem.head_dim);
  params.dk = contiguous(tensors.dk, problem, problem.seqlen_k, problem.heads_kv, problem.head_dim);
  params.dv =
      contiguous(tensors.dv, problem, problem.seqlen_k, problem.heads_kv, problem.head_dim_v);
  params.deterministic = problem.deterministic;
  return params;
}

}  // namespace flashattn::cli
