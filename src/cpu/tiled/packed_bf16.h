// bf16 operand layouts for the AMX tile products (see amx.h), packed from the caller's tensors.
#pragma once

#include <cstdint>

#include "cpu/tiled/operands.h"

namespace flashattn::cpu_tiled {

// AMX tiles take 32 bf16 along the reduced dimension and 16 columns: head dims are padded
// to a multiple of 32 with zeros.
inline int64_t padded_dim(int64_t dim) {
  return (dim + 31) / 32 * 32;
}

// Key tiles for amx_scores: tile t (dim_pad * kKeyTile elements) holds keys t*kKeyTile ..
// (t+1)*kKeyTile - 1 as [dim_pad / 2][kKeyTile keys][2]; keys at or past `count` and dims past the
// head dim are zero.
void pack_key_tiles_bf16(const HeadRows& keys, int64_t count, int64_t dim_pad, uint16_t* dst);

// Value tiles for amx_accumulate: tile t (kKeyTile * dim_v_pad elements) holds the keys of
// tile t as [kKeyTile / 2 key pairs][dim_v_pad][2]; zero padded likewise.
void pack_value_tiles_bf16(const HeadRows& values, int64_t count, int64_t dim_v_pad, uint16_t* dst);

// Transposed tiles: tile t (dim_pad * kKeyTile elements) is [dim_pad][kKeyTile], element
// (d, c) = element (t * kKeyTile + c, d); zero padded. The a operand of amx_accumulate for
// dQ^T += K^T dS^T in the backward.
void pack_transposed_tiles_bf16(const HeadRows& rows, int64_t count, int64_t dim_pad,
                                uint16_t* dst);

// dst[r][d] (row length dim_pad) = element (row0 + r, d), zero for d >= dim and for rows in
// [count, rows_total).
void gather_rows_bf16(const HeadRows& source, int64_t row0, int64_t count, int64_t rows_total,
                      int64_t dim_pad, uint16_t* dst);

}  // namespace flashattn::cpu_tiled
