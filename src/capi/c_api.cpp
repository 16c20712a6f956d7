// The C ABI of include/flashattn/c_api.h: converts its plain structs to the C++ params and back.
#include "flashattn/c_api.h"

#include <exception>
#include <limits>
#include <new>
#include <string>
#include <type_traits>

#include "flashattn/flashattn.h"

#if defined(FLASHATTN_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace flashattn {
namespace {

// The C enums are the C++ ones by value; a mismatch would silently pick another dtype.
static_assert(FLASHATTN_DTYPE_FP32 == static_cast<int>(DType::fp32));
static_assert(FLASHATTN_DEVICE_CUDA == static_cast<int>(Device::cuda));
static_assert(FLASHATTN_BACKEND_CUDA_SM90 == static_cast<int>(Backend::cuda_sm90));
static_assert(FLASHATTN_STATUS_INTERNAL == static_cast<int>(StatusCode::internal));
static_assert(std::is_standard_layout_v<flashattn_backward_args>);

thread_local std::string last_error;

int32_t record(const Status& status) {
  if (!status.ok()) last_error = status.message();
  return static_cast<int32_t>(status.code());
}

TensorRef to_tensor(const flashattn_tensor& tensor) {
  return {tensor.data, tensor.batch_stride, tensor.row_stride, tensor.head_stride,
          tensor.dim_stride};
}

LseRef to_lse(const flashattn_lse& lse) {
  return {lse.data, lse.batch_stride, lse.head_stride};
}

// Enum values are copied as they are: validation reports an out-of-range code by name.
void to_args(const flashattn_attention_args& in, AttentionArgs* out) {
  out->device = static_cast<Device>(in.device);
  out->backend = static_cast<Backend>(in.backend);
  out->dtype = static_cast<DType>(in.dtype);
  out->batch = in.batch;
  out->seqlen_q = in.seqlen_q;
  out->seqlen_k = in.seqlen_k;
  out->heads_q = in.heads_q;
  out->heads_kv = in.heads_kv;
  out->head_dim = in.head_dim;
  out->head_dim_v = in.head_dim_v;
  out->q = to_tensor(in.q);
  out->k = to_tensor(in.k);
  out->v = to_tensor(in.v);
  out->cu_seqlens_q = in.cu_seqlens_q;
  out->cu_seqlens_k = in.cu_seqlens_k;
  out->seqused_k = in.seqused_k;
  out->total_q = in.total_q;
  out->total_k = in.total_k;
  out->softmax_scale = in.softmax_scale;
  out->causal = in.causal != 0;
  out->window_left = in.window_left;
  out->window_right = in.window_right;
  out->softcap = in.softcap;
  out->alibi_slopes = in.alibi_slopes;
  out->alibi_batch_stride = in.alibi_batch_stride;
  out->dropout_p = in.dropout_p;
  out->dropout_seed = in.dropout_seed;
  out->dropout_offset = in.dropout_offset;
  out->dropout_seed_offset = in.dropout_seed_offset;
  out->stream = in.stream;
  out->num_threads = in.num_threads;
}

ForwardParams to_forward(const flashattn_forward_args& in) {
  ForwardParams params;
  to_args(in.args, &params);
  params.out = to_tensor(in.out);
  params.lse = to_lse(in.lse);
  params.dropout_mask = in.dropout_mask;
  return params;
}

BackwardParams to_backward(const flashattn_backward_args& in) {
  BackwardParams params;
  to_args(in.args, &params);
  params.out = to_tensor(in.out);
  params.dout = to_tensor(in.dout);
  params.lse = to_lse(in.lse);
  params.dq = to_tensor(in.dq);
  params.dk = to_tensor(in.dk);
  params.dv = to_tensor(in.dv);
  params.deterministic = in.deterministic != 0;
  params.workspace = in.workspace;
  params.workspace_bytes = static_cast<size_t>(in.workspace_bytes);
  return params;
}

#if defined(FLASHATTN_WITH_CUDA)
// Makes the caller's device current for one call and restores the previous one: a framework
// thread may hold tensors on several GPUs, and the kernels launch on the current device.
class DeviceGuard {
 public:
  Status enter(const flashattn_attention_args& args) {
    if (args.device != FLASHATTN_DEVICE_CUDA) return Status::Ok();
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      cudaGetLastError();
      return {StatusCode::cuda_error, "device_index: no usable CUDA device"};
    }
    if (args.device_index == previous_) return Status::Ok();
    if (cudaSetDevice(args.device_index) != cudaSuccess) {
      cudaGetLastError();
      return {StatusCode::cuda_error, "device_index: cannot make CUDA device " +
                                          std::to_string(args.device_index) + " current"};
    }
    switched_ = true;
    return Status::Ok();
  }
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(previous_);
  }

 private:
  int previous_ = 0;
  bool switched_ = false;
};
#else
struct DeviceGuard {
  Status enter(const flashattn_attention_args&) { return Status::Ok(); }
};
#endif

// Runs `call` with the struct checked for null and the device made current; C++ exceptions
// never cross the C boundary.
template <typename Args, typename Call>
int32_t guarded(const Args* params, const char* name, Call call) {
  try {
    if (params == nullptr) {
      return record(Status::InvalidArgument(std::string(name) + ": expected a pointer, got null"));
    }
    DeviceGuard guard;
    if (Status status = guard.enter(params->args); !status.ok()) return record(status);
    return record(call(*params));
  } catch (const std::bad_alloc&) {
    return record({StatusCode::out_of_memory, "host memory exhausted"});
  } catch (const std::exception& error) {
    return record({StatusCode::internal, std::string("unexpected exception: ") + error.what()});
  } catch (...) {
    return record({StatusCode::internal, "unexpected exception"});
  }
}

}  // namespace
}  // namespace flashattn

using flashattn::guarded;
using flashattn::to_backward;
using flashattn::to_forward;

extern "C" {

void flashattn_attention_args_init(flashattn_attention_args* args) {
  if (args == nullptr) return;
  *args = flashattn_attention_args{};
  args->backend = FLASHATTN_BACKEND_AUTOMATIC;
  args->dtype = FLASHATTN_DTYPE_BF16;
  args->q.dim_stride = args->k.dim_stride = args->v.dim_stride = 1;
  args->softmax_scale = std::numeric_limits<float>::quiet_NaN();
  args->window_left = -1;
  args->window_right = -1;
}

int32_t flashattn_forward(const flashattn_forward_args* params) {
  return guarded(params, "params", [](const flashattn_forward_args& in) {
    return flashattn::forward(to_forward(in));
  });
}

int32_t flashattn_backward(const flashattn_backward_args* params) {
  return guarded(params, "params", [](const flashattn_backward_args& in) {
    return flashattn::backward(to_backward(in));
  });
}

int32_t flashattn_validate_forward(const flashattn_forward_args* params) {
  return guarded(params, "params", [](const flashattn_forward_args& in) {
    return flashattn::validate(to_forward(in));
  });
}

int32_t flashattn_validate_backward(const flashattn_backward_args* params) {
  return guarded(params, "params", [](const flashattn_backward_args& in) {
    return flashattn::validate(to_backward(in));
  });
}

int32_t flashattn_select_forward_backend(const flashattn_forward_args* params, int32_t* backend) {
  return guarded(params, "params", [backend](const flashattn_forward_args& in) {
    if (backend == nullptr)
      return flashattn::Status::InvalidArgument("backend: expected a pointer, got null");
    flashattn::Backend chosen = flashattn::Backend::automatic;
    flashattn::Status status = flashattn::select_backend(to_forward(in), &chosen);
    if (status.ok()) *backend = static_cast<int32_t>(chosen);
    return status;
  });
}

int32_t flashattn_backward_workspace_size(const flashattn_backward_args* params, uint64_t* bytes) {
  return guarded(params, "params", [bytes](const flashattn_backward_args& in) {
    if (bytes == nullptr)
      return flashattn::Status::InvalidArgument("bytes: expected a pointer, got null");
    size_t size = 0;
    flashattn::Status status = flashattn::backward_workspace_size(to_backward(in), &size);
    if (status.ok()) *bytes = static_cast<uint64_t>(size);
    return status;
  });
}

const char* flashattn_last_error(void) {
  return flashattn::last_error.c_str();
}

const char* flashattn_status_name(int32_t status) {
  return flashattn::to_string(static_cast<flashattn::StatusCode>(status));
}

const char* flashattn_backend_name(int32_t backend) {
  return flashattn::to_string(static_cast<flashattn::Backend>(backend));
}

int32_t flashattn_cuda_available(void) {
  try {
    return flashattn::cuda_available() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

const char* flashattn_version(void) {
  return flashattn::version();
}

int32_t flashattn_abi_version(void) {
  return FLASHATTN_C_ABI_VERSION;
}

size_t flashattn_struct_size(int32_t which) {
  switch (which) {
    case FLASHATTN_STRUCT_TENSOR: return sizeof(flashattn_tensor);
    case FLASHATTN_STRUCT_LSE: return sizeof(flashattn_lse);
    case FLASHATTN_STRUCT_ATTENTION_ARGS: return sizeof(flashattn_attention_args);
    case FLASHATTN_STRUCT_FORWARD_ARGS: return sizeof(flashattn_forward_args);
    case FLASHATTN_STRUCT_BACKWARD_ARGS: return sizeof(flashattn_backward_args);
    default: return 0;
  }
}

}  // extern "C"
