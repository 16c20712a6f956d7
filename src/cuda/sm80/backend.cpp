// The cuda_sm80 backend: device checks, the choice of kernel instance, and the launch.
//
// Checked on the host before any launch (named errors through unsupported_reason): dtype,
// head dims above the largest tile, instances missing from a narrowed build, grid limits,
// compute capability below sm80, and that every pointer is device (or managed) memory of the
// current device, aligned to its element. Any stride and any 2-byte-aligned base pointer is
// taken: rows that allow 16-byte accesses use cp.async, the others a predicated scalar copy.
// cu_seqlens_q/k and seqused_k stay on the device and are never read here; the kernel clamps
// them to [0, total] and to the declared maxima, so inconsistent values give wrong rows but
// never an out-of-bounds access.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "api/backends.h"
#include "common/philox.h"
#include "cuda/sm80/backward_args.h"
#include "cuda/sm80/forward_args.h"

namespace flashattn::cuda_sm80 {
namespace {

constexpr int kMaxGridYZ = 65535;
// Row indices inside a sequence are 32-bit in the kernels (offsets are 64-bit).
constexpr int64_t kMaxSeqlen = INT32_MAX - 1024;

using LaunchForward = Status (*)(const ForwardKernelArgs&, cudaStream_t);
using LaunchBackward = Status (*)(const BackwardKernelArgs&, cudaStream_t);

// The instances this build contains (CMake writes the list from FLASHATTN_HDIMS / _DTYPES).
LaunchForward find_forward(DType dtype, int width, bool extras) {
#define FLASHATTN_FORWARD_INSTANCE(DTYPE, WIDTH)                 \
  if (dtype == DType::DTYPE && width == WIDTH) {                 \
    return extras ? &launch_forward<DType::DTYPE, WIDTH, true>   \
                  : &launch_forward<DType::DTYPE, WIDTH, false>; \
  }
#define FLASHATTN_BACKWARD_INSTANCE(DTYPE, WIDTH)
#include "flashattn_cuda_instances.inc"
#undef FLASHATTN_BACKWARD_INSTANCE
#undef FLASHATTN_FORWARD_INSTANCE
  return nullptr;
}

LaunchBackward find_backward(DType dtype, int width, bool extras) {
#define FLASHATTN_FORWARD_INSTANCE(DTYPE, WIDTH)
#define FLASHATTN_BACKWARD_INSTANCE(DTYPE, WIDTH)                      \
  if (dtype == DType::DTYPE && width == WIDTH) {                       \
    return extras ? &launch_backward_main<DType::DTYPE, WIDTH, true>   \
                  : &launch_backward_main<DType::DTYPE, WIDTH, false>; \
  }
#include "flashattn_cuda_instances.inc"
#undef FLASHATTN_BACKWARD_INSTANCE
#undef FLASHATTN_FORWARD_INSTANCE
  return nullptr;
}

// Smallest tile width that holds both head dims, 0 when none does.
int tile_width(int64_t head_dim, int64_t head_dim_v) {
  const int64_t widest = head_dim > head_dim_v ? head_dim : head_dim_v;
  for (int width : kTileWidths) {
    if (widest <= width) return width;
  }
  return 0;
}

// The score modifiers that live in the "extras" instances. A non-positive scale also goes
// there: the plain kernels fold the scale into exp2 after taking the row max, which assumes
// that scaling preserves order.
bool needs_extras(const AttentionArgs& args) {
  return args.softcap > 0.0f || args.alibi_slopes != nullptr || args.dropout_p > 0.0f ||
         !(args.softmax_scale > 0.0f && args.softmax_scale < INFINITY);
}

// Empty when `pointer` is device memory usable from `device`, else why not.
std::string device_pointer_problem(const char* name, const void* pointer, int device,
                                   int64_t alignment) {
  if (pointer == nullptr) return {};
  cudaPointerAttributes attributes{};
  const cudaError_t error = cudaPointerGetAttributes(&attributes, pointer);
  if (error != cudaSuccess) {
    cudaGetLastError();  // clear the error so that it does not surface at the next launch
    return std::string(name) + ": cudaPointerGetAttributes failed (" + cudaGetErrorString(error) +
           ")";
  }
  if (attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged) {
    return std::string(name) + ": expected a pointer to device memory, got " +
           (attributes.type == cudaMemoryTypeHost ? "pinned host memory" : "host memory");
  }
  if (attributes.type == cudaMemoryTypeDevice && attributes.device != device) {
    return std::string(name) + ": memory of device " + std::to_string(attributes.device) +
           ", expected the current device " + std::to_string(device);
  }
  if (reinterpret_cast<uintptr_t>(pointer) % alignment != 0) {
    return std::string(name) + ": base pointer not aligned to its element size (" +
           std::to_string(alignment) + " bytes)";
  }
  return {};
}

bool vectorizable(const TensorRef& tensor, bool varlen) {
  const bool aligned_base = reinterpret_cast<uintptr_t>(tensor.data) % 16 == 0;
  const bool aligned_batch = varlen || tensor.batch_stride % 8 == 0;
  return aligned_base && aligned_batch && tensor.row_stride % 8 == 0 && tensor.head_stride % 8 == 0;
}

}  // namespace

namespace {

struct Operand {
  const char* name;
  const void* pointer;
  int64_t alignment;
};

// The checks forward and backward share: dtype, a tile width, grid and length limits, the
// device, every pointer in operands, and then a kernel of `direction` for the width in this
// build (has_kernel).
template <typename HasKernel>
std::string shared_unsupported_reason(const AttentionArgs& params, const char* direction,
                                      HasKernel has_kernel,
                                      std::initializer_list<Operand> operands) {
  if (params.dtype != DType::fp16 && params.dtype != DType::bf16) {
    return std::string("dtype: expected fp16 or bf16, got ") + to_string(params.dtype);
  }
  const int width = tile_width(params.head_dim, params.head_dim_v);
  if (width == 0) {
    return "head_dim: the largest tile is 256, got head_dim " + std::to_string(params.head_dim) +
           " and head_dim_v " + std::to_string(params.head_dim_v);
  }
  if (params.batch > kMaxGridYZ || params.heads_q > kMaxGridYZ) {
    return "batch and heads_q: at most " + std::to_string(kMaxGridYZ) + " each, got batch " +
           std::to_string(params.batch) + " and heads_q " + std::to_string(params.heads_q);
  }
  if (params.seqlen_q > kMaxSeqlen || params.seqlen_k > kMaxSeqlen) {
    return "seqlen: at most " + std::to_string(kMaxSeqlen) + " per sequence, got seqlen_q " +
           std::to_string(params.seqlen_q) + " and seqlen_k " + std::to_string(params.seqlen_k);
  }

  int device = 0;
  cudaError_t error = cudaGetDevice(&device);
  int major = 0;
  int minor = 0;
  if (error == cudaSuccess) {
    error = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  }
  if (error == cudaSuccess) {
    error = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  }
  if (error != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable CUDA device (") + cudaGetErrorString(error) + ")";
  }
  if (major < 8) {
    return "compute capability: sm80 or newer required, device " + std::to_string(device) +
           " is sm" + std::to_string(major * 10 + minor);
  }

  for (const Operand& operand : operands) {
    std::string problem =
        device_pointer_problem(operand.name, operand.pointer, device, operand.alignment);
    if (!problem.empty()) return problem;
  }
  // Last: a narrowed build still names a bad argument first.
  if (!has_kernel(params.dtype, width)) {
    return std::string("no ") + direction + " kernel for " + to_string(params.dtype) +
           " tile width " + std::to_string(width) +
           " in this build (narrowed by FLASHATTN_HDIMS / FLASHATTN_DTYPES)";
  }
  return {};
}

}  // namespace

std::string unsupported_reason(const ForwardParams& params) {
  return shared_unsupported_reason(
      params, "forward",
      [](DType dtype, int width) { return find_forward(dtype, width, false) != nullptr; },
      {
          {"q", params.q.data, 2},
          {"k", params.k.data, 2},
          {"v", params.v.data, 2},
          {"out", params.out.data, 2},
          {"lse", params.lse.data, 4},
          {"cu_seqlens_q", params.cu_seqlens_q, 4},
          {"cu_seqlens_k", params.cu_seqlens_k, 4},
          {"seqused_k", params.seqused_k, 4},
          {"alibi_slopes", params.alibi_slopes, 4},
          {"dropout_mask", params.dropout_mask, 1},
          {"dropout_seed_offset", params.dropout_seed_offset, 8},
      });
}

std::string unsupported_reason(const BackwardParams& params) {
  return shared_unsupported_reason(
      params, "backward",
      [](DType dtype, int width) { return find_backward(dtype, width, false) != nullptr; },
      {
          {"q", params.q.data, 2},
          {"k", params.k.data, 2},
          {"v", params.v.data, 2},
          {"out", params.out.data, 2},
          {"dout", params.dout.data, 2},
          {"lse", params.lse.data, 4},
          {"dq", params.dq.data, 2},
          {"dk", params.dk.data, 2},
          {"dv", params.dv.data, 2},
          {"cu_seqlens_q", params.cu_seqlens_q, 4},
          {"cu_seqlens_k", params.cu_seqlens_k, 4},
          {"seqused_k", params.seqused_k, 4},
          {"alibi_slopes", params.alibi_slopes, 4},
          {"workspace", params.workspace, 16},
          {"dropout_seed_offset", params.dropout_seed_offset, 8},
      });
}

namespace {

// The kernels' view of the problem, shared by forward and backward (out and lse are the
// forward's results in both).
ForwardKernelArgs attention_args(const AttentionArgs& params, const TensorRef& out,
                                 const LseRef& lse) {
  const bool varlen = params.cu_seqlens_q != nullptr;
  ForwardKernelArgs args{};
  args.q = params.q.data;
  args.k = params.k.data;
  args.v = params.v.data;
  args.out = out.data;
  args.lse = lse.data;
  args.q_batch_stride = params.q.batch_stride;
  args.q_row_stride = params.q.row_stride;
  args.q_head_stride = params.q.head_stride;
  args.k_batch_stride = params.k.batch_stride;
  args.k_row_stride = params.k.row_stride;
  args.k_head_stride = params.k.head_stride;
  args.v_batch_stride = params.v.batch_stride;
  args.v_row_stride = params.v.row_stride;
  args.v_head_stride = params.v.head_stride;
  args.out_batch_stride = out.batch_stride;
  args.out_row_stride = out.row_stride;
  args.out_head_stride = out.head_stride;
  args.lse_batch_stride = lse.batch_stride;
  args.lse_head_stride = lse.head_stride;
  args.cu_seqlens_q = params.cu_seqlens_q;
  args.cu_seqlens_k = params.cu_seqlens_k;
  args.seqused_k = params.seqused_k;
  args.total_q = params.total_q;
  args.total_k = params.total_k;
  args.batch = static_cast<int>(params.batch);
  args.heads_q = static_cast<int>(params.heads_q);
  args.heads_kv = static_cast<int>(params.heads_kv);
  args.seqlen_q = static_cast<int>(params.seqlen_q);
  args.seqlen_k = static_cast<int>(params.seqlen_k);
  args.head_dim = static_cast<int>(params.head_dim);
  args.head_dim_v = static_cast<int>(params.head_dim_v);
  args.softmax_scale = params.softmax_scale;
  args.softcap = params.softcap;
  args.alibi_slopes = params.alibi_slopes;
  args.alibi_batch_stride = params.alibi_batch_stride;
  args.window_left = params.window_left;
  args.window_right = params.window_right;
  args.dropout_p = params.dropout_p;
  args.dropout_seed = params.dropout_seed;
  args.dropout_offset = params.dropout_offset;
  args.dropout_seed_offset = params.dropout_seed_offset;
  args.keep_threshold = dropout_keep_threshold(params.dropout_p);
  args.vectorized_q = vectorizable(params.q, varlen);
  args.vectorized_k = vectorizable(params.k, varlen);
  args.vectorized_v = vectorizable(params.v, varlen);
  args.vectorized_out = vectorizable(out, varlen);
  return args;
}

// Workspace rows per head (workspace_slot0): varlen, every sequence's rows and the gap after
// it; dense, seqlen_q rounded up per sequence.
int64_t rows_total(const AttentionArgs& params) {
  return params.cu_seqlens_q != nullptr ? params.total_q + params.batch * int64_t{kWorkspaceRowGap}
                                        : params.batch * dense_workspace_rows(params.seqlen_q);
}

int query_blocks(const AttentionArgs& params) {
  return static_cast<int>((params.seqlen_q + kBackwardBlockM - 1) / kBackwardBlockM);
}

BackwardWorkspaceLayout workspace_layout(const BackwardParams& params) {
  return backward_workspace_layout(params.heads_q, rows_total(params),
                                   tile_width(params.head_dim, params.head_dim_v), params.batch,
                                   query_blocks(params), params.deterministic);
}

Status cuda_failure(const char* what, cudaError_t error) {
  return {error == cudaErrorMemoryAllocation ? StatusCode::out_of_memory : StatusCode::cuda_error,
          std::string("cuda backward: ") + what + ": " + cudaGetErrorString(error)};
}

}  // namespace

Status forward(const ForwardParams& params) {
  if (params.batch == 0 || params.heads_q == 0 || params.seqlen_q == 0) return Status::Ok();
  const int width = tile_width(params.head_dim, params.head_dim_v);
  const LaunchForward launch = find_forward(params.dtype, width, needs_extras(params));
  if (launch == nullptr) {
    return Status::Unsupported(std::string("cuda forward: no kernel for ") +
                               to_string(params.dtype) + " tile width " + std::to_string(width));
  }
  cudaStream_t stream = static_cast<cudaStream_t>(params.stream);

  if (params.dropout_p > 0.0f && params.dropout_mask != nullptr) {
    // The kernels write the mask only inside the key blocks they visit; everything else
    // (skipped blocks, padding of varlen sequences) is 0 = "not kept".
    const size_t bytes =
        static_cast<size_t>(params.batch * params.heads_q * params.seqlen_q * params.seqlen_k);
    const cudaError_t error = cudaMemsetAsync(params.dropout_mask, 0, bytes, stream);
    if (error != cudaSuccess) {
      return {StatusCode::cuda_error,
              std::string("cuda forward: clearing dropout_mask: ") + cudaGetErrorString(error)};
    }
  }

  ForwardKernelArgs args = attention_args(params, params.out, params.lse);
  args.dropout_mask = params.dropout_p > 0.0f ? params.dropout_mask : nullptr;
  return launch(args, stream);
}

Status backward_workspace_size(const BackwardParams& params, size_t* bytes) {
  *bytes = workspace_layout(params).total;
  return Status::Ok();
}

// Pre-pass (delta, LSE in log2 units), main kernel (dK, dV; dQ in fp32), post-pass (dQ).
Status backward(const BackwardParams& params) {
  if (params.batch == 0 || params.heads_q == 0) return Status::Ok();
  const bool varlen = params.cu_seqlens_q != nullptr;
  const int width = tile_width(params.head_dim, params.head_dim_v);
  const LaunchBackward launch = find_backward(params.dtype, width, needs_extras(params));
  if (launch == nullptr) {
    return Status::Unsupported(std::string("cuda backward: no kernel for ") +
                               to_string(params.dtype) + " tile width " + std::to_string(width));
  }
  cudaStream_t stream = static_cast<cudaStream_t>(params.stream);
  const BackwardWorkspaceLayout layout = workspace_layout(params);
  if (params.workspace != nullptr && params.workspace_bytes < layout.total) {
    return Status::InvalidArgument("workspace: needs " + std::to_string(layout.total) +
                                   " bytes (backward_workspace_size), got " +
                                   std::to_string(params.workspace_bytes));
  }

  // Without a caller's workspace, a stream-ordered allocation (capturable in CUDA graphs).
  void* allocated = nullptr;
  if (params.workspace == nullptr) {
    const cudaError_t error = cudaMallocAsync(&allocated, layout.total, stream);
    if (error != cudaSuccess) {
      cudaGetLastError();
      return cuda_failure("allocating the workspace", error);
    }
  }
  auto* workspace =
      static_cast<unsigned char*>(allocated != nullptr ? allocated : params.workspace);

  BackwardKernelArgs args{};
  args.attention = attention_args(params, params.out, params.lse);
  args.dout = params.dout.data;
  args.dout_batch_stride = params.dout.batch_stride;
  args.dout_row_stride = params.dout.row_stride;
  args.dout_head_stride = params.dout.head_stride;
  args.dq = params.dq.data;
  args.dq_batch_stride = params.dq.batch_stride;
  args.dq_row_stride = params.dq.row_stride;
  args.dq_head_stride = params.dq.head_stride;
  args.dk = params.dk.data;
  args.dk_batch_stride = params.dk.batch_stride;
  args.dk_row_stride = params.dk.row_stride;
  args.dk_head_stride = params.dk.head_stride;
  args.dv = params.dv.data;
  args.dv_batch_stride = params.dv.batch_stride;
  args.dv_row_stride = params.dv.row_stride;
  args.dv_head_stride = params.dv.head_stride;
  args.lse_log2 = reinterpret_cast<float*>(workspace + layout.lse_log2);
  args.delta = reinterpret_cast<float*>(workspace + layout.delta);
  args.dq_accum = reinterpret_cast<float*>(workspace + layout.dq_accum);
  args.semaphores =
      params.deterministic ? reinterpret_cast<int*>(workspace + layout.semaphores) : nullptr;
  args.rows_total = rows_total(params);
  args.dq_accum_width = width;
  args.m_blocks = query_blocks(params);
  args.dq_scale = needs_extras(params) ? 1.0f : params.softmax_scale;
  args.vectorized_dout = vectorizable(params.dout, varlen);
  args.vectorized_dq = vectorizable(params.dq, varlen);
  args.vectorized_dk = vectorizable(params.dk, varlen);
  args.vectorized_dv = vectorizable(params.dv, varlen);

  Status status = Status::Ok();
  if (!FLASHATTN_SM80_CLEAR_IN_PREPARE) {
    const cudaError_t cleared = cudaMemsetAsync(workspace + layout.zeroed_begin, 0,
                                                layout.total - layout.zeroed_begin, stream);
    if (cleared != cudaSuccess) status = cuda_failure("clearing the workspace", cleared);
    if (status.ok()) status = launch_backward_prepare(params.dtype, args, stream);
  }
  if (status.ok()) status = launch(args, stream);  // (the pre-pass,) the main kernel, the post-pass
  if (allocated != nullptr) {
    const cudaError_t freed = cudaFreeAsync(allocated, stream);
    if (freed != cudaSuccess && status.ok()) status = cuda_failure("freeing the workspace", freed);
  }
  return status;
}

}  // namespace flashattn::cuda_sm80
