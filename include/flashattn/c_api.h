/* flashattn C ABI: plain structs over flashattn::forward/backward/validate for any language. */
#ifndef FLASHATTN_C_API_H_
#define FLASHATTN_C_API_H_

/*
 * Every struct holds only fixed-width integers, floats and pointers, so its layout is the
 * platform's natural C layout (what Python's ctypes.Structure builds). Strides count elements.
 * A binding checks flashattn_abi_version() and flashattn_struct_size() before its first call.
 *
 * Every function returns a status code (FLASHATTN_STATUS_*). On failure the message, naming the
 * argument, the expected and the actual value, is kept per thread until the next failing call
 * on that thread and is read with flashattn_last_error(). No function aborts or prints.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define FLASHATTN_C_EXPORT __declspec(dllexport)
#else
#define FLASHATTN_C_EXPORT __attribute__((visibility("default")))
#endif

/* Bumped whenever a struct below changes layout or meaning. */
#define FLASHATTN_C_ABI_VERSION 1

/* Codes equal to flashattn::StatusCode. */
enum {
  FLASHATTN_STATUS_OK = 0,
  FLASHATTN_STATUS_INVALID_ARGUMENT = 1,
  FLASHATTN_STATUS_UNSUPPORTED = 2,
  FLASHATTN_STATUS_CUDA_ERROR = 3,
  FLASHATTN_STATUS_OUT_OF_MEMORY = 4,
  FLASHATTN_STATUS_INTERNAL = 5,
};

/* Codes equal to flashattn::DType, flashattn::Device and flashattn::Backend. */
enum { FLASHATTN_DTYPE_FP16 = 0, FLASHATTN_DTYPE_BF16 = 1, FLASHATTN_DTYPE_FP32 = 2 };
enum { FLASHATTN_DEVICE_CPU = 0, FLASHATTN_DEVICE_CUDA = 1 };
enum {
  FLASHATTN_BACKEND_AUTOMATIC = 0,
  FLASHATTN_BACKEND_CPU_REFERENCE = 1,
  FLASHATTN_BACKEND_CPU_TILED = 2,
  FLASHATTN_BACKEND_CUDA_SM80 = 3,
  FLASHATTN_BACKEND_CUDA_SM90 = 4,
};

/* Which struct flashattn_struct_size() measures. */
enum {
  FLASHATTN_STRUCT_TENSOR = 0,
  FLASHATTN_STRUCT_LSE = 1,
  FLASHATTN_STRUCT_ATTENTION_ARGS = 2,
  FLASHATTN_STRUCT_FORWARD_ARGS = 3,
  FLASHATTN_STRUCT_BACKWARD_ARGS = 4,
};

/* flashattn::TensorRef: element (b, s, h, d) at data + b*batch_stride + s*row_stride
 * + h*head_stride + d*dim_stride (dim_stride must be 1; batch_stride is ignored in varlen). */
typedef struct flashattn_tensor {
  void* data;
  int64_t batch_stride;
  int64_t row_stride;
  int64_t head_stride;
  int64_t dim_stride;
} flashattn_tensor;

/* flashattn::LseRef: fp32, zero strides meaning the contiguous flash_attn layout. */
typedef struct flashattn_lse {
  float* data;
  int64_t batch_stride;
  int64_t head_stride;
} flashattn_lse;

/* flashattn::AttentionArgs, field for field; booleans are int32 (0 or 1). */
typedef struct flashattn_attention_args {
  int32_t device;       /* FLASHATTN_DEVICE_* */
  int32_t device_index; /* CUDA device ordinal, made current for the call; ignored on the CPU */
  int32_t backend;      /* FLASHATTN_BACKEND_* */
  int32_t dtype;        /* FLASHATTN_DTYPE_* */

  int64_t batch;
  int64_t seqlen_q; /* varlen: max_seqlen_q */
  int64_t seqlen_k; /* varlen: max_seqlen_k */
  int64_t heads_q;
  int64_t heads_kv;
  int64_t head_dim;
  int64_t head_dim_v; /* 0: same as head_dim */

  flashattn_tensor q;
  flashattn_tensor k;
  flashattn_tensor v;

  const int32_t* cu_seqlens_q; /* varlen: int32 [batch + 1] on the device, or both null */
  const int32_t* cu_seqlens_k;
  const int32_t* seqused_k; /* optional int32 [batch] */
  int64_t total_q;
  int64_t total_k;

  float softmax_scale; /* NaN: 1/sqrt(head_dim) */
  int32_t causal;
  int64_t window_left; /* -1: unbounded */
  int64_t window_right;
  float softcap; /* 0: off */

  const float* alibi_slopes; /* fp32 [heads_q] or [batch, heads_q] */
  int64_t alibi_batch_stride;

  float dropout_p;
  uint64_t dropout_seed;
  uint64_t dropout_offset;
  const int64_t* dropout_seed_offset; /* optional {seed, offset} on the call's device, overrides */

  void* stream;        /* cudaStream_t for device cuda; null is the legacy default stream */
  int32_t num_threads; /* CPU: OpenMP threads, 0 for the OpenMP default */
} flashattn_attention_args;

/* flashattn::ForwardParams. */
typedef struct flashattn_forward_args {
  flashattn_attention_args args;
  flashattn_tensor out;
  flashattn_lse lse;     /* data may be null */
  uint8_t* dropout_mask; /* optional uint8 [batch, heads_q, seqlen_q, seqlen_k] */
} flashattn_forward_args;

/* flashattn::BackwardParams. */
typedef struct flashattn_backward_args {
  flashattn_attention_args args;
  flashattn_tensor out;
  flashattn_tensor dout;
  flashattn_lse lse;
  flashattn_tensor dq;
  flashattn_tensor dk;
  flashattn_tensor dv;
  int32_t deterministic;
  void* workspace; /* null: the library allocates */
  uint64_t workspace_bytes;
} flashattn_backward_args;

/* Fills the defaults of flashattn::AttentionArgs (NaN scale, unbounded window, dim_stride 1). */
FLASHATTN_C_EXPORT void flashattn_attention_args_init(flashattn_attention_args* args);

FLASHATTN_C_EXPORT int32_t flashattn_forward(const flashattn_forward_args* params);
FLASHATTN_C_EXPORT int32_t flashattn_backward(const flashattn_backward_args* params);
FLASHATTN_C_EXPORT int32_t flashattn_validate_forward(const flashattn_forward_args* params);
FLASHATTN_C_EXPORT int32_t flashattn_validate_backward(const flashattn_backward_args* params);

/* The backend forward would run, as FLASHATTN_BACKEND_* in *backend. */
FLASHATTN_C_EXPORT int32_t flashattn_select_forward_backend(const flashattn_forward_args* params,
                                                            int32_t* backend);
FLASHATTN_C_EXPORT int32_t flashattn_backward_workspace_size(const flashattn_backward_args* params,
                                                             uint64_t* bytes);

/* Message of the last failing call on this thread ("" if none); valid until the next call. */
FLASHATTN_C_EXPORT const char* flashattn_last_error(void);

FLASHATTN_C_EXPORT const char* flashattn_status_name(int32_t status);
FLASHATTN_C_EXPORT const char* flashattn_backend_name(int32_t backend);
FLASHATTN_C_EXPORT int32_t flashattn_cuda_available(void);
FLASHATTN_C_EXPORT const char* flashattn_version(void);
FLASHATTN_C_EXPORT int32_t flashattn_abi_version(void);
/* sizeof of the struct named by FLASHATTN_STRUCT_*, 0 for an unknown code. */
FLASHATTN_C_EXPORT size_t flashattn_struct_size(int32_t which);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FLASHATTN_C_API_H_ */
