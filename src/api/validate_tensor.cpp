// Pointer, stride and extent checks of the strided operands (q, k, v, out, gradients, LSE).
#include "api/validate_tensor.h"

#include <array>
#include <string>
#include <utility>

#include "api/normalize.h"
#include "api/validate_common.h"

namespace flashattn::detail {
namespace {

// One dimension of an operand: its extent, its stride in elements and the stride's field
// name for messages.
struct StridedDim {
  const char* stride_name;
  int64_t extent;
  int64_t stride;
};

// An operand reduced to what the checks need: its dimensions outermost first, the last one
// contiguous (stride 1).
struct StridedView {
  const char* name;
  const void* data;
  std::array<StridedDim, 4> dims;
  int rank;
  int64_t element_bytes;

  std::string shape() const {
    std::string text = "[";
    for (int i = 0; i < rank; ++i) text += (i ? ", " : "") + std::to_string(dims[i].extent);
    return text + "]";
  }
  std::string strides() const {
    std::string text = "[";
    for (int i = 0; i < rank; ++i) text += (i ? ", " : "") + std::to_string(dims[i].stride);
    return text + "]";
  }
};

// Sufficient condition for distinct addresses: with the dimensions sorted by stride, each
// stride lies beyond the largest offset the smaller ones reach. Every dense layout and every
// padded permutation of one passes; zero strides (broadcast) on an extent > 1 do not.
bool strides_overlap(const StridedView& view) {
  std::array<StridedDim, 4> spanning{};
  int count = 0;
  for (int i = 0; i < view.rank; ++i) {
    if (view.dims[i].extent > 1) spanning[count++] = view.dims[i];
  }
  for (int i = 1; i < count; ++i) {  // insertion sort by stride: at most four entries
    for (int j = i; j > 0 && spanning[j].stride < spanning[j - 1].stride; --j) {
      std::swap(spanning[j], spanning[j - 1]);
    }
  }
  int64_t reach = 0;  // fits: bounded by the largest offset, checked before
  for (int i = 0; i < count; ++i) {
    if (spanning[i].stride <= reach) return true;
    reach += (spanning[i].extent - 1) * spanning[i].stride;
  }
  return false;
}

// Negative strides and an element count beyond int64; *elements is the count on success.
Status check_extents(const StridedView& view, int64_t* elements) {
  for (int i = 0; i < view.rank; ++i) {
    if (view.dims[i].stride < 0) {
      return invalid(view.name, std::string(view.dims[i].stride_name) + " must be >= 0, got " +
                                    std::to_string(view.dims[i].stride));
    }
  }
  bool empty = false;
  for (int i = 0; i < view.rank; ++i) empty = empty || view.dims[i].extent == 0;
  *elements = empty ? 0 : 1;
  for (int i = 0; i < view.rank && !empty; ++i) {
    if (!checked_mul(*elements, view.dims[i].extent, elements)) {
      return invalid(view.name,
                     "shape " + view.shape() + " has more elements than int64 can count");
    }
  }
  return Status::Ok();
}

// For an operand with elements: data present, every byte reachable through the strides
// addressable in int64, and for outputs distinct addresses.
Status check_addressing(const StridedView& view, Access access) {
  if (view.data == nullptr) {
    return invalid(view.name, "expected data for shape " + view.shape() + ", got null");
  }
  int64_t last_offset = 0;
  bool fits = true;
  for (int i = 0; i < view.rank && fits; ++i) {
    int64_t span = 0;
    fits = checked_mul(view.dims[i].extent - 1, view.dims[i].stride, &span) &&
           checked_add(last_offset, span, &last_offset);
  }
  int64_t end_byte = 0;
  if (!fits || !checked_mul(last_offset, view.element_bytes, &end_byte) ||
      !checked_add(end_byte, view.element_bytes, &end_byte)) {
    return invalid(view.name, "largest offset overflows int64 for shape " + view.shape() +
                                  " with strides " + view.strides());
  }
  if (access == Access::write && strides_overlap(view)) {
    return invalid(view.name, "expected non-overlapping strides for shape " + view.shape() +
                                  ", got " + view.strides());
  }
  return Status::Ok();
}

}  // namespace

Status check_tensor(const char* name, const TensorRef& tensor, const TensorExtents& extents,
                    DType dtype, Access access) {
  if (tensor.dim_stride != 1) {
    return invalid(name,
                   "last-dimension stride must be 1, got " + std::to_string(tensor.dim_stride));
  }
  StridedView view{name, tensor.data, {}, 0, element_size(dtype)};
  if (!extents.packed)
    view.dims[view.rank++] = {"batch_stride", extents.batch, tensor.batch_stride};
  view.dims[view.rank++] = {"row_stride", extents.rows, tensor.row_stride};
  view.dims[view.rank++] = {"head_stride", extents.heads, tensor.head_stride};
  view.dims[view.rank++] = {"dim_stride", extents.dim, 1};
  int64_t elements = 0;
  if (Status status = check_extents(view, &elements); !status.ok()) return status;
  if (elements == 0) return Status::Ok();  // nothing is read or written: any pointer will do
  return check_addressing(view, access);
}

Status check_lse(const LseRef& lse, const AttentionArgs& args, Access access, bool required) {
  if (lse.data == nullptr && !required) return Status::Ok();
  StridedView view{"lse", lse.data, {}, 0, static_cast<int64_t>(sizeof(float))};
  if (is_varlen(args)) {
    view.dims[view.rank++] = {"head_stride", args.heads_q, lse.head_stride};
    view.dims[view.rank++] = {"token stride", args.total_q, 1};
  } else {
    view.dims[view.rank++] = {"batch_stride", args.batch, lse.batch_stride};
    view.dims[view.rank++] = {"head_stride", args.heads_q, lse.head_stride};
    view.dims[view.rank++] = {"row stride", args.seqlen_q, 1};
  }
  int64_t elements = 0;
  if (Status status = check_extents(view, &elements); !status.ok()) return status;
  if (elements == 0) return Status::Ok();
  // Resolve the zero shorthand only now: its products are bounded by the element count.
  LseRef resolved = lse;
  normalize_lse(args, resolved);
  if (is_varlen(args)) {
    view.dims[0].stride = resolved.head_stride;
  } else {
    view.dims[0].stride = resolved.batch_stride;
    view.dims[1].stride = resolved.head_stride;
  }
  return check_addressing(view, access);
}

}  // namespace flashattn::detail
