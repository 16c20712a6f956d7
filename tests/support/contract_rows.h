// The shared case tables: the contract rows every backend runs (CPU tiled, CUDA forward and
// backward), the rows only the CUDA tests add, and the small rows the sanitizer runs.
#pragma once

#include <vector>

#include "support/attention_case.h"

namespace flashattn::testing {

// What becomes of the fp32 rows of the contract table: kept (CPU backends), or run in the
// half type written beside each row (backends without fp32, e.g. CUDA).
enum class Fp32Rows { keep, to_half };

// One row per case (not a cross product): every head-dim bucket, seqlens 1/113/203/1023 with
// seqlen_q != seqlen_k both ways, batch 1 and 3, GQA and MQA, each feature on and off, every
// dtype, varlen with empty sequences, seqused_k, strided layouts, rows that see no key.
std::vector<AttentionCase> contract_rows(Fp32Rows fp32_rows);

// Rows the CUDA tests add to the contract rows: tile widths and score paths of their own
// (80, 160, a negative scale, head_dim_v 40 under 256), a square 1023 grid with MQA 4:1.
std::vector<AttentionCase> cuda_extra_rows();

// Small cases (seqlen <= 130, a few heads) of every feature, fp16 / bf16: cheap enough for
// compute-sanitizer.
std::vector<AttentionCase> small_rows();

}  // namespace flashattn::testing
