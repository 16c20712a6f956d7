// bf16 tile products on Intel AMX (TDPBF16PS), for bf16 problems on CPUs that have it.
//
// Operands are bf16 in the layouts AMX wants: A row-major, B in "VNNI" pairs (element (k, n)
// of B at (k / 2, n, k % 2)). One call computes a whole kQueryTile x kKeyTile score tile or
// adds a whole P.V product, so the tile configuration is loaded once per thread (amx_begin_thread).
#pragma once

#include <cstdint>

namespace flashattn::cpu_tiled {

// AMX-BF16 and AVX512-BF16 on this CPU, and the kernel's permission to use the tile state
// (requested once per process). False on every other CPU: callers use the fp32 kernels then.
// FLASHATTN_CPU_ISA=portable or =avx512 turns it off.
bool amx_bf16_available();

// Loads this thread's tile configuration / releases the tile state. Every thread that calls
// the products below brackets its work with these.
void amx_begin_thread();
void amx_end_thread();

// s[kQueryTile][kKeyTile] (fp32, row-major) = q[kQueryTile][dim_pad] . keys^T, with keys
// packed as pairs [dim_pad / 2][kKeyTile keys][2]. dim_pad is a multiple of 32.
void amx_scores(const uint16_t* q, const uint16_t* keys_packed, int64_t dim_pad, float* s);

// out[kQueryTile][dim_v_pad] (fp32, row-major) += p[kQueryTile][kKeyTile] . values, with
// values packed as pairs [kKeyTile / 2 key pairs][dim_v_pad][2]. dim_v_pad is a multiple of 32.
void amx_accumulate(const uint16_t* p, const uint16_t* values_packed, int64_t dim_v_pad,
                    float* out);

// dst[j] = bf16(src[j]) (round to nearest even) for j < n.
void convert_to_bf16(const float* src, int64_t n, uint16_t* dst);

}  // namespace flashattn::cpu_tiled
