// Checks of one strided operand (a TensorRef or the LSE) against the extents the sizes imply:
// the one place that decides what a valid pointer/stride combination is.
#pragma once

#include <cstdint>

#include "flashattn/params.h"
#include "flashattn/types.h"

namespace flashattn::detail {

// Whether the library writes through the operand; written operands must not overlap.
enum class Access { read, write };

// Extents of a [batch, rows, heads, dim] operand. Packed (varlen) operands are
// [rows, heads, dim] with rows the total token count, and their batch_stride is ignored.
struct TensorExtents {
  int64_t batch = 0;
  int64_t rows = 0;
  int64_t heads = 0;
  int64_t dim = 0;
  bool packed = false;
};

// dim_stride == 1, no negative stride, non-null data when there are elements, element count
// and largest reachable byte offset within int64, and for outputs no two elements sharing
// an address.
Status check_tensor(const char* name, const TensorRef& tensor, const TensorExtents& extents,
                    DType dtype, Access access);

// The fp32 LSE, [batch, heads_q, seqlen_q] (varlen [heads_q, total_q]), zero strides meaning
// contiguous. `required`: null data is an error when the LSE has elements; otherwise null
// means "not requested" and nothing else is checked.
Status check_lse(const LseRef& lse, const AttentionArgs& args, Access access, bool required);

}  // namespace flashattn::detail
