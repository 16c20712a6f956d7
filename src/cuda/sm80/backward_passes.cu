// The two light passes around the backward's main kernel:
//   prepare: delta = rowsum(dO * O) and the forward's LSE in log2 units, one fp32 per query
//            row and head, in the workspace's slot layout (so the main kernel reads both
//            contiguously whatever the caller's LSE strides);
//   finish:  dq = dq_accum * dq_scale rounded to the element type, into the caller's strides
//            (dq_accum in the main kernel's fragment order, args.dq_layout).
// Both run one block per (64 query rows, batch, head) and touch only the rows of sequences.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <string>

#include "cuda/common/ptx.cuh"
#include "cuda/sm80/backward_args.h"
#include "cuda/sm80/backward_rows.cuh"
#include "cuda/sm80/dependent_launch.cuh"
#include "cuda/sm80/sequence_view.cuh"

namespace flashattn::cuda_sm80 {
namespace {

constexpr int kPassThreads = 256;
constexpr int kPassWarps = kPassThreads / 32;

size_t align_up(size_t bytes) {
  return (bytes + 255) / 256 * 256;
}

// The rows one pass block covers: (64 query rows, batch, head) from the grid. `active` is
// false past the end of the sequence (the grid is sized for the longest).
struct PassBlock {
  int b;
  int h;
  int m0;
  SequenceView seq;
  int64_t slot0;  // workspace slot of the sequence's first row
  bool active;
};

__device__ __forceinline__ PassBlock pass_block(const BackwardKernelArgs& args) {
  PassBlock block;
  block.b = blockIdx.y;
  block.h = blockIdx.z;
  block.m0 = blockIdx.x * kBackwardBlockM;
  block.seq = sequence_view(args.attention, block.b, block.h);
  block.slot0 = workspace_slot0(args, block.seq, block.b, block.h);
  block.active = block.m0 < block.seq.len_q;
  return block;
}

// The workspace the main kernel accumulates into, cleared by the pass block of its rows
// (FLASHATTN_SM80_CLEAR_IN_PREPARE): its 64 dq_accum rows, and the sequence's last block the
// rest of the last dQ tile too, since a tile spreads its rows' values over all of its
// tile_rows x width floats (DqTileLayout); the first block the (batch, head)'s semaphores.
// Rows past the last tile are never read: the main kernel's adds there land in the gap.
__device__ __forceinline__ void clear_workspace(const BackwardKernelArgs& args,
                                                const PassBlock& block) {
  const int tile_rows = args.dq_layout.tile_rows;
  const int tiled_rows = (block.seq.len_q + tile_rows - 1) / tile_rows * tile_rows;
  const int end =
      block.m0 + kBackwardBlockM >= block.seq.len_q ? tiled_rows : block.m0 + kBackwardBlockM;
  // dq_accum_width is a multiple of 32 and the slots start 256-byte aligned: whole float4s.
  float4* rows =
      reinterpret_cast<float4*>(args.dq_accum + (block.slot0 + block.m0) * args.dq_accum_width);
  const int count = (end - block.m0) * args.dq_accum_width / 4;
  for (int i = static_cast<int>(threadIdx.x); i < count; i += kPassThreads) {
    rows[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
  if (args.semaphores != nullptr && block.m0 == 0) {
    int* semaphores =
        args.semaphores + (int64_t{block.b} * args.attention.heads_q + block.h) * args.m_blocks;
    for (int i = static_cast<int>(threadIdx.x); i < args.m_blocks; i += kPassThreads) {
      semaphores[i] = 0;
    }
  }
}

// The dot product of eight elements of O and dO (one uint4 each).
template <typename T>
__device__ __forceinline__ float dot8(const uint4& out_bits, const uint4& dout_bits) {
  const T* o = reinterpret_cast<const T*>(&out_bits);
  const T* d = reinterpret_cast<const T*>(&dout_bits);
  float dot = 0.0f;
#pragma unroll
  for (int e = 0; e < 8; ++e) dot += static_cast<float>(o[e]) * static_cast<float>(d[e]);
  return dot;
}

// kLanesPerRow lanes per row (eight columns each: the fewest that cover head_dim_v), so a
// warp covers 32 / kLanesPerRow rows at once, and a warp loads kStepsAtOnce such row groups
// before the first product. One lane per eight columns of a whole warp per row, as before,
// left 3/4 of the lanes idle at d64 and one row's loads in flight per warp: 116 us at d64 s512
// (bf16, 16k tokens, 32 heads; 2.3 TB/s) against FA2's 73 us for the same bytes. All of a
// warp's rows at once, with every step's addresses kept for an element-wise fallback, took
// 80-154 registers (1-3 blocks an SM) and 77-83 us at d64-d256: the fallback (unaligned
// tensors, head_dim_v not a multiple of 8) is now a loop of its own. Measured on the H200
// (session 16, kernel times, bf16, s512): two row groups at once, 73.9 / 69.8 / 73.7 us at d64 /
// d128 / d256 (FA2's dot_do_o: 73 / 68 / 70); four took 86 registers and 95.6 us at d128, and
// 71.8 us at d256 (in another call: not an A/B).
// FLASHATTN_SM80_PREPARE_STEPS_AT_ONCE = n (A/B runs).
#ifndef FLASHATTN_SM80_PREPARE_STEPS_AT_ONCE
#define FLASHATTN_SM80_PREPARE_STEPS_AT_ONCE 2
#endif
template <typename T, int kLanesPerRow>
__global__ void __launch_bounds__(kPassThreads)
    backward_prepare_kernel(const __grid_constant__ BackwardKernelArgs args) {
  constexpr int kRowsAtOnce = 32 / kLanesPerRow;  // per warp
  constexpr int kSteps = kBackwardBlockM / (kPassWarps * kRowsAtOnce);
  static_assert(kSteps >= 1 && kBackwardBlockM % (kPassWarps * kRowsAtOnce) == 0);
  constexpr int kStepsAtOnce =
      kSteps < FLASHATTN_SM80_PREPARE_STEPS_AT_ONCE ? kSteps : FLASHATTN_SM80_PREPARE_STEPS_AT_ONCE;
  static_assert(kSteps % kStepsAtOnce == 0, "whole rounds");
  const ForwardKernelArgs& a = args.attention;
  const PassBlock block = pass_block(args);
  if (!block.active) return;
  const SequenceView& seq = block.seq;
  const int64_t dout_offset = query_rows_offset(a, seq, block.b, block.h, args.dout_batch_stride,
                                                args.dout_row_stride, args.dout_head_stride);
  const T* out = static_cast<const T*>(a.out) + seq.out_offset;
  const T* dout = static_cast<const T*>(args.dout) + dout_offset;
  const float* lse = a.lse + lse_offset(a, seq, block.b, block.h);

  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int col = (lane % kLanesPerRow) * 8;
  // Step s of warp w: rows (s * kPassWarps + w) * kRowsAtOnce onward, one per lane group.
  auto row_of = [&](int step) {
    return block.m0 + (step * kPassWarps + warp) * kRowsAtOnce + lane / kLanesPerRow;
  };
  // The row's dot summed over its lane group, written with the row's LSE in log2 units.
  auto finish_row = [&](int row, float dot) {
#pragma unroll
    for (int offset = kLanesPerRow / 2; offset > 0; offset /= 2) {
      dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    }
    if (lane % kLanesPerRow == 0 && row < seq.len_q) {
      args.delta[block.slot0 + row] = dot;
      // +inf (a row that saw no key) stays +inf: the main kernel's exp2 then gives P = 0.
      args.lse_log2[block.slot0 + row] = lse[row] * cuda::kLog2e;
    }
  };

  if (a.vectorized_out && args.vectorized_dout && a.head_dim_v % 8 == 0) {
    const bool in_row = col < a.head_dim_v;
#pragma unroll 1
    for (int round = 0; round < kSteps; round += kStepsAtOnce) {
      uint4 out_bits[kStepsAtOnce];
      uint4 dout_bits[kStepsAtOnce];
#pragma unroll
      for (int k = 0; k < kStepsAtOnce; ++k) {
        const int row = row_of(round + k);
        out_bits[k] = dout_bits[k] = make_uint4(0, 0, 0, 0);
        if (row < seq.len_q && in_row) {
          out_bits[k] = *reinterpret_cast<const uint4*>(out + row * a.out_row_stride + col);
          dout_bits[k] = *reinterpret_cast<const uint4*>(dout + row * args.dout_row_stride + col);
        }
      }
      // The clearing's stores after the first loads, so that those are in flight first.
      if (FLASHATTN_SM80_CLEAR_IN_PREPARE && round == 0) clear_workspace(args, block);
#pragma unroll
      for (int k = 0; k < kStepsAtOnce; ++k) {
        finish_row(row_of(round + k), dot8<T>(out_bits[k], dout_bits[k]));
      }
    }
  } else {
    if (FLASHATTN_SM80_CLEAR_IN_PREPARE) clear_workspace(args, block);
    const int valid = col < a.head_dim_v ? min(8, a.head_dim_v - col) : 0;
    for (int step = 0; step < kSteps; ++step) {
      const int row = row_of(step);
      float dot = 0.0f;
      if (row < seq.len_q) {
        const T* o = out + row * a.out_row_stride + col;
        const T* d = dout + row * args.dout_row_stride + col;
        for (int e = 0; e < valid; ++e) dot += static_cast<float>(o[e]) * static_cast<float>(d[e]);
      }
      finish_row(row, dot);
    }
  }
}

// The post-pass's store of eight dQ columns of a row (from registers or the staged tile): one
// 16-byte store where all eight lie in the row (left: head_dim - the first column) and dq
// allows it (vectorized), else element by element.
template <typename T>
__device__ __forceinline__ void store_dq_chunk(T* to, const T* from, int left, bool vectorized) {
  const int valid = min(8, left);
  if (valid == 8 && vectorized) {
    *reinterpret_cast<uint4*>(to) = *reinterpret_cast<const uint4*>(from);
  } else {
    for (int e = 0; e < valid; ++e) to[e] = from[e];
  }
}

// The post-pass of tiles narrower than FLASHATTN_SM80_FINISH_STAGED_FROM_WIDTH (below) reads
// eight columns of one row per thread (four float2 16 bytes apart). Two variants measured
// slower on the H200 (session 16, kernel times, bf16, s512): four such items a thread loaded at
// once, 56 us at d64 (52 before) and no change at d128 (73 us, FA2 62); consecutive threads on
// consecutive lane slots (a warp reading 512 contiguous bytes, each thread storing two column
// pairs of 4 bytes), 79 / 87 / 105 us at d64 / d128 / d256.
template <typename T>
__global__ void __launch_bounds__(kPassThreads)
    backward_finish_kernel(const __grid_constant__ BackwardKernelArgs args) {
  wait_for_previous_kernel();  // the main kernel's dQ (FLASHATTN_SM80_BWD_PDL)
  const ForwardKernelArgs& a = args.attention;
  const PassBlock block = pass_block(args);
  if (!block.active) return;
  const int m0 = block.m0;
  const SequenceView& seq = block.seq;
  const int64_t slot0 = block.slot0;
  T* dq =
      static_cast<T*>(args.dq) + query_rows_offset(a, seq, block.b, block.h, args.dq_batch_stride,
                                                   args.dq_row_stride, args.dq_head_stride);
  const int chunks = (a.head_dim + 7) / 8;
  const int rows = min(kBackwardBlockM, seq.len_q - m0);
  const DqTileLayout& layout = args.dq_layout;
  for (int index = static_cast<int>(threadIdx.x); index < rows * chunks; index += kPassThreads) {
    const int row = m0 + index / chunks;
    const int col = (index % chunks) * 8;
    // The eight columns are one n8 block of one warp's fragments (DqTileLayout): values
    // 2 hh, 2 hh + 1 of lanes 4 g .. 4 g + 3.
    const int tile_row = row % layout.tile_rows;
    const float* from = args.dq_accum + (slot0 + row - tile_row) * args.dq_accum_width +
                        layout.value_offset(tile_row, col);
    float values[8];
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const float2 pair = *reinterpret_cast<const float2*>(from + 4 * t);
      values[2 * t] = pair.x;
      values[2 * t + 1] = pair.y;
    }
    T converted[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) converted[e] = static_cast<T>(values[e] * args.dq_scale);
    store_dq_chunk(dq + row * args.dq_row_stride + col, converted, a.head_dim - col,
                   args.vectorized_dq);
  }
}

// The post-pass staged through shared memory: consecutive threads read consecutive dq_accum
// lane slots (a warp 512 contiguous bytes), convert and write each slot's two column pairs into
// a row-major tile of the block's 64 rows in shared memory; then each thread stores eight
// columns of a row (16 bytes) as the unstaged kernel does. Measured on the H200 (bench/NOTES.md,
// session 17, kernel times, bf16, s512): 59.5 / 61.5 us at d128 / d256 against the unstaged
// kernel's 72.5 / 77.6 (FA2's 62 / 67), but 64.5 us at d64 against 52.1. So tiles from
// FLASHATTN_SM80_FINISH_STAGED_FROM_WIDTH (128) up take it: 0 stages every width, 1000 none.
#ifndef FLASHATTN_SM80_FINISH_STAGED_FROM_WIDTH
#define FLASHATTN_SM80_FINISH_STAGED_FROM_WIDTH 128
#endif
// Row pitch of the staged tile in elements: the width and 16 bytes, so that the 8 rows x 4
// column pairs of a slot block's stores fall in 32 different banks at every width.
__host__ __device__ constexpr int staged_pitch(int width) {
  return width + 8;
}

template <typename T>
__global__ void __launch_bounds__(kPassThreads)
    backward_finish_staged_kernel(const __grid_constant__ BackwardKernelArgs args) {
  wait_for_previous_kernel();  // the main kernel's dQ (FLASHATTN_SM80_BWD_PDL)
  extern __shared__ __align__(16) unsigned char staged_bytes[];
  T* staged = reinterpret_cast<T*>(staged_bytes);
  const ForwardKernelArgs& a = args.attention;
  const PassBlock block = pass_block(args);
  if (!block.active) return;
  const SequenceView& seq = block.seq;
  const DqTileLayout& layout = args.dq_layout;
  const int pitch = staged_pitch(args.dq_accum_width);
  // This block's 64 rows are rows [tile_row0, tile_row0 + 64) of their tile, whose values lie
  // in kBackwardBlockM / warp_rows row warps' regions in each column of warps (DqTileLayout).
  const int tile_row0 = block.m0 % layout.tile_rows;
  const int slots = kBackwardBlockM * args.dq_accum_width / 4;
  const float4* tile = reinterpret_cast<const float4*>(
      args.dq_accum + (block.slot0 + block.m0 - tile_row0) * args.dq_accum_width);
  for (int slot = static_cast<int>(threadIdx.x); slot < slots; slot += kPassThreads) {
    int index, tile_row, col;
    layout.slot_position(tile_row0, kBackwardBlockM, slot, &index, &tile_row, &col);
    const int row = tile_row - tile_row0;
    const float4 values = tile[index];
    T upper[2] = {static_cast<T>(values.x * args.dq_scale),
                  static_cast<T>(values.y * args.dq_scale)};
    T lower[2] = {static_cast<T>(values.z * args.dq_scale),
                  static_cast<T>(values.w * args.dq_scale)};
    *reinterpret_cast<uint32_t*>(staged + row * pitch + col) = *reinterpret_cast<uint32_t*>(upper);
    *reinterpret_cast<uint32_t*>(staged + (row + 8) * pitch + col) =
        *reinterpret_cast<uint32_t*>(lower);
  }
  __syncthreads();
  T* dq =
      static_cast<T*>(args.dq) + query_rows_offset(a, seq, block.b, block.h, args.dq_batch_stride,
                                                   args.dq_row_stride, args.dq_head_stride);
  const int chunks = (a.head_dim + 7) / 8;
  const int rows = min(kBackwardBlockM, seq.len_q - block.m0);
  for (int index = static_cast<int>(threadIdx.x); index < rows * chunks; index += kPassThreads) {
    const int row = index / chunks;
    const int col = (index % chunks) * 8;
    store_dq_chunk(dq + (block.m0 + row) * args.dq_row_stride + col, staged + row * pitch + col,
                   a.head_dim - col, args.vectorized_dq);
  }
}

template <template <typename> class Kernel>
Status launch_pass(const char* name, DType dtype, const BackwardKernelArgs& args,
                   cudaStream_t stream) {
  const ForwardKernelArgs& a = args.attention;
  const dim3 grid((a.seqlen_q + kBackwardBlockM - 1) / kBackwardBlockM, a.batch, a.heads_q);
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return Status::Ok();
  const cudaError_t error = dtype == DType::fp16
                                ? Kernel<__half>::launch(grid, stream, args)
                                : Kernel<__nv_bfloat16>::launch(grid, stream, args);
  if (error != cudaSuccess) {
    return {StatusCode::cuda_error,
            std::string("cuda backward: ") + name + " launch failed: " + cudaGetErrorString(error)};
  }
  return Status::Ok();
}

template <typename T>
struct Prepare {
  static cudaError_t launch(dim3 grid, cudaStream_t stream, const BackwardKernelArgs& args) {
    const int head_dim_v = args.attention.head_dim_v;
    if (head_dim_v <= 32) {
      backward_prepare_kernel<T, 4><<<grid, kPassThreads, 0, stream>>>(args);
    } else if (head_dim_v <= 64) {
      backward_prepare_kernel<T, 8><<<grid, kPassThreads, 0, stream>>>(args);
    } else if (head_dim_v <= 128) {
      backward_prepare_kernel<T, 16><<<grid, kPassThreads, 0, stream>>>(args);
    } else {
      backward_prepare_kernel<T, 32><<<grid, kPassThreads, 0, stream>>>(args);
    }
    return cudaGetLastError();
  }
};
// After the main kernel, as its programmatic dependent where enabled (dependent_launch.cuh).
template <typename T>
struct Finish {
  static cudaError_t launch(dim3 grid, cudaStream_t stream, const BackwardKernelArgs& args) {
    if (args.dq_accum_width >= FLASHATTN_SM80_FINISH_STAGED_FROM_WIDTH) {
      // At most 64 x 264 x 2 = 33 KB (d256): under the 48 KB a launch may take unasked.
      const size_t bytes = size_t{kBackwardBlockM} * staged_pitch(args.dq_accum_width) * sizeof(T);
      return launch_after_previous(backward_finish_staged_kernel<T>, grid, kPassThreads, bytes,
                                   stream, args);
    }
    return launch_after_previous(backward_finish_kernel<T>, grid, kPassThreads, 0, stream, args);
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
  layout.semaphores =
      layout.dq_accum + align_up(slots * static_cast<size_t>(width) * sizeof(float));
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
