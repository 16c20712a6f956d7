// Programmatic dependent launch (sm90 and newer) between the backward's three kernels
// (FLASHATTN_SM80_BWD_PDL=1, off by default, not yet measured): the main kernel and the post-pass
// are launched so that the GPU may set them up while the kernel before them drains, and each
// waits at its start (griddepcontrol.wait) until that kernel has completed and its writes are
// visible. Between kernels launched plainly the GPU idles for the launch: at s512 the three
// kernels' event-timed span exceeded the sum of their times by 5-6 us (session 16, kernel times),
// 0.7-1.2% of a backward, where three grid points sat at 0.995-0.999x FA2. No kernel triggers
// its dependents early (griddepcontrol.launch_dependents): the main kernel's blocks take a whole
// SM, and waiting ones would crowd out the pre-pass's last blocks.
#pragma once

#include <cuda_runtime.h>

namespace flashattn::cuda_sm80 {

#ifndef FLASHATTN_SM80_BWD_PDL
#define FLASHATTN_SM80_BWD_PDL 0
#endif

// Waits until the kernel this one was launched after (launch_after_previous) has completed and
// its writes are visible; returns at once where there is none (a plain launch) or before sm90.
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (FLASHATTN_SM80_BWD_PDL) asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Launches kernel(args) after the stream's previous kernel as a programmatic dependent where
// FLASHATTN_SM80_BWD_PDL is set and the device has compute capability 9.0 or more (the kernel
// must call wait_for_previous_kernel before it reads what that kernel wrote), else plainly.
template <typename Args>
cudaError_t launch_after_previous(void (*kernel)(Args), dim3 grid, int threads, size_t smem_bytes,
                                  cudaStream_t stream, const Args& args) {
  int major = 0;
  int device = 0;
  const bool programmatic =
      FLASHATTN_SM80_BWD_PDL && cudaGetDevice(&device) == cudaSuccess &&
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
      major >= 9;
  if (!programmatic) {
    kernel<<<grid, threads, smem_bytes, stream>>>(args);
    return cudaGetLastError();
  }
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = dim3(threads);
  config.dynamicSmemBytes = smem_bytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, args);
}

}  // namespace flashattn::cuda_sm80
