// A tiny C ABI over flashattn::forward for bench/gpu_forward.py (ctypes): dense
// [batch, seqlen, heads, dim] tensors given by pointer and element strides, on a given stream.
#include <cstdint>
#include <cstring>

#include "flashattn/flashattn.h"

extern "C" {

// strides: {batch, row, head} in elements for q, k, v, out (last dim contiguous).
// dtype: 0 fp16, 1 bf16. Returns 0 on success, else the StatusCode with the message in error.
int flashattn_bench_forward(int dtype, int64_t batch, int64_t seqlen_q, int64_t seqlen_k,
                            int64_t heads_q, int64_t heads_kv, int64_t head_dim, void* q,
                            const int64_t* q_strides, void* k, const int64_t* k_strides, void* v,
                            const int64_t* v_strides, void* out, const int64_t* out_strides,
                            float* lse, int causal, float softmax_scale, void* stream, char* error,
                            int error_bytes) {
  flashattn::ForwardParams params;
  params.device = flashattn::Device::cuda;
  params.backend = flashattn::Backend::cuda_sm80;
  params.dtype = dtype == 0 ? flashattn::DType::fp16 : flashattn::DType::bf16;
  params.batch = batch;
  params.seqlen_q = seqlen_q;
  params.seqlen_k = seqlen_k;
  params.heads_q = heads_q;
  params.heads_kv = heads_kv;
  params.head_dim = head_dim;
  auto ref = [](void* data, const int64_t* strides) {
    return flashattn::TensorRef{data, strides[0], strides[1], strides[2], 1};
  };
  params.q = ref(q, q_strides);
  params.k = ref(k, k_strides);
  params.v = ref(v, v_strides);
  params.out = ref(out, out_strides);
  params.lse.data = lse;
  params.causal = causal != 0;
  if (softmax_scale > 0) params.softmax_scale = softmax_scale;
  params.stream = stream;
  const flashattn::Status status = flashattn::forward(params);
  if (!status.ok() && error != nullptr && error_bytes > 0) {
    std::strncpy(error, status.message().c_str(), error_bytes - 1);
    error[error_bytes - 1] = '\0';
  }
  return static_cast<int>(status.code());
}

}  // extern "C"
