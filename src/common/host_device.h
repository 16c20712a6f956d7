// FLASHATTN_HD: marks helpers that are compiled for both the CPU backends and CUDA kernels.
#pragma once

#if defined(__CUDACC__)
#define FLASHATTN_HD __host__ __device__ __forceinline__
#else
#define FLASHATTN_HD inline
#endif
