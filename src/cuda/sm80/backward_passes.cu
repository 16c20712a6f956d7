// The two light passes around the backward's main kernel:
//   prepare: delta = rowsum(dO * O) and the forward's LSE in log2 units, one fp32 per query
//            row and head, in the workspace's slot layout (so the main kernel reads both
//            contiguously whatever the caller's LSE strides);
//   finish:  dq = dq_accum * dq_scale rounded to the element type, into the caller's strides.
// Both run one block per (64 query rows, batch, head) and touch only the rows of sequences.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <string>

#include "cuda/sm80/backward_args.h"
#include "cuda/sm80/sequence_view.cuh"

namespace flashattn::cuda_sm80 {
namespace {

constexpr int kPassThreads = 256;
constexpr int kPassWarps = kPassThreads / 32;

size_t align_up(size_t bytes) { return (bytes + 255) / 256 * 256; }

__device__ __forceinline__ int64_t first_slot(const BackwardKernelArgs& args, const SequenceView& seq,
                                              int b, int h) {
  const bool varlen = args.attention.cu_seqlens_q != nullptr;
  return h * args.rows_total + (varlen ? seq.q_row0 : int64_t{b} * args.attention.seqlen_q);
}

template <typename T>
__global__ void __launch_bounds__(kPassThreads)
    backward_prepare_kernel(const __grid_constant__ BackwardKernelArgs args) {
  const ForwardKernelArgs& a = args.attention;
  const int b = blockIdx.y;
  const int h = blockIdx.z;
  const SequenceView seq = sequence_view(a, b, h);
  const int m0 = blockIdx.x * kBackwardBlockM;
  if (m0 >= seq.len_q) return;
  const bool varlen = a.cu_seqlens_q != nullptr;
  const int64_t slot0 = first_slot(args, seq, b, h);
  const int64_t dout_offset =
      (varlen ? seq.q_row0 * args.dout_row_stride : b * args.dout_batch_stride) +
      h * args.dout_head_stride;
  const int64_t lse_offset = varlen ? h * a.lse_head_stride + seq.q_row0
                                    : b * a.lse_batch_stride + h * a.lse_head_stride;
  const T* out = static_cast<const T*>(a.out) + seq.out_offset;
  const T* dout = static_cast<const T*>(args.dout) + dout_offset;
  const bool vectorized = a.vectorized_out && args.vectorized_dout;

  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int col = lane * 8;  // a row of up to 256 columns: 8 per lane
  const int valid = col < a.head_dim_v ? min(8, a.head_dim_v - col) : 0;
  for (int r = warp; r < kBackwardBlockM; r += kPassWarps) {
    const int row = m0 + r;
    if (row >= seq.len_q) break;
    const T* o = out + row * a.out_row_stride + col;
    const T* d = dout + row * args.dout_row_stride + col;
    float dot = 0.0f;
    if (valid == 8 && vectorized) {
      const uint4 o_bits = *reinterpret_cast<const uint4*>(o);
      const uint4 d_bits = *reinterpret_cast<const uint4*>(d);
      const T* o8 = reinterpret_cast<const T*>(&o_bits);
      const T* d8 = reinterpret_cast<const T*>(&d_bits);
#pragma unroll
      for (int e = 0; e < 8; ++e) dot += static_cast<float>(o8[e]) * static_cast<float>(d8[e]);
    } else {
      for (int e = 0; e < valid; ++e) dot += static_cast<float>(o[e]) * static_cast<float>(d[e]);
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
      dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    }
    if (lane == 0) {
      args.delta[slot0 + row] = dot;
      // +inf (a row that saw no key) stays +inf: the main kernel's exp2 then gives P = 0.
      args.lse_log2[slot0 + row] = a.lse[lse_offset + row] * 1.4426950408889634f;
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kPassThreads)
    backward_finish_kernel(const __grid_constant__ BackwardKernelArgs args) {
  const ForwardKernelArgs& a = args.attention;
  const int b = blockIdx.y;
  const int h = blockIdx.z;
  const SequenceView seq = sequence_view(a, b, h);
  const int m0 = blockIdx.x * kBackwardBlockM;
  if (m0 >= seq.len_q) return;
  const bool varlen = a.cu_seqlens_q != nullptr;
  const int64_t slot0 = first_slot(args, seq, b, h);
  const int64_t dq_offset = (varlen ? seq.q_row0 * args.dq_row_stride : b * args.dq_batch_stride) +
                            h * args.dq_head_stride;
  T* dq = static_cast<T*>(args.dq) + dq_offset;
  const int chunks = (a.head_dim + 7) / 8;
  const int rows = min(kBackwardBlockM, seq.len_q - m0);
  for (int index = static_cast<int>(threadIdx.x); index < rows * chunks; index += kPassThreads) {
    const int row = m0 + index / chunks;
    const int col = (index % chunks) * 8;
    const float4* from = reinterpret_cast<const float4*>(
        args.dq_accum + (slot0 + row) * args.dq_accum_width + col);
    const float4 lo = from[0];
    const float4 hi = from[1];
    const float values[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    T converted[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) converted[e] = static_cast<T>(values[e] * args.dq_scale);
    T* to = dq + row * args.dq_row_stride + col;
    const int valid = min(8, a.head_dim - col);
    if (valid == 8 && args.vectorized_dq) {
      *reinterpret_cast<uint4*>(to) = *reinterpret_cast<const uint4*>(converted);
    } else {
      for (int e = 0; e < valid; ++e) to[e] = converted[e];
    }
  }
}

template <template <typename> class Kernel>
Status launch_pass(const char* name, DType dtype, const BackwardKernelArgs& args,
                   cudaStream_t stream) {
  const ForwardKernelArgs& a = args.attention;
  const dim3 grid((a.seqlen_q + kBackwardBlockM - 1) / kBackwardBlockM, a.batch, a.heads_q);
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return Status::Ok();
  if (dtype == DType::fp16) {
    Kernel<__half>::launch(grid, stream, args);
  } else {
    Kernel<__nv_bfloat16>::launch(grid, stream, args);
  }
  const cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) {
    return {StatusCode::cuda_error,
            std::string("cuda backward: ") + name + " launch failed: " + cudaGetErrorString(error)};
  }
  return Status::Ok();
}

template <typename T>
struct Prepare {
  static void launch(dim3 grid, cudaStream_t stream, const BackwardKernelArgs& args) {
    backward_prepare_kernel<T><<<grid, kPassThreads, 0, stream>>>(args);
  }
};
template <typename T>
struct Finish {
  static void launch(dim3 grid, cudaStream_t stream, const BackwardKernelArgs& args) {
    backward_finish_kernel<T><<<grid, kPassThreads, 0, stream>>>(args);
  }
};

}  // namespace

BackwardWorkspaceLayout backward_workspace_layout(int64_t heads_q, int64_t rows_total, int width,
                                                  int64_t batch, int m_blocks, bool deterministic) {
  BackwardWorkspaceLayout layout;
  const size_t slots = static_cast<size_t>(heads_q) * static_cast<size_t>(rows_total);
  layout.lse_log2 = 0;
  layout.delta = align_up(slots * sizeof(float));
  layout.dq_accum = layout.delta + align_up(slots * sizeof(float));
  layout.zeroed_begin = layout.dq_accum;
  layout.semaphores = layout.dq_accum + align_up(slots * static_cast<size_t>(width) * sizeof(float));
  const size_t semaphores =
      deterministic ? static_cast<size_t>(batch) * static_cast<size_t>(heads_q) * m_blocks : 0;
  // Never empty, so that a successful allocation always yields a pointer.
  layout.total = layout.semaphores + align_up(semaphores * sizeof(int)) + 256;
  return layout;
}

Status launch_backward_prepare(DType dtype, const BackwardKernelArgs& args, cudaStream_t stream) {
  return launch_pass<Prepare>("pre-pass (delta)", dtype, args, stream);
}

Status launch_backward_finish(DType dtype, const BackwardKernelArgs& args, cudaStream_t stream) {
  return launch_pass<Finish>("post-pass (dq)", dtype, args, stream);
}

}  // namespace flashattn::cuda_sm80
