// Backend::cpu_reference: the fp64 oracle behind the public API, writing the caller's buffers.
#include <algorithm>

#include "api/backends.h"
#include "cpu/reference/reference.h"
#include "cpu/reference/sequences.h"
#include "cpu/reference/strided_io.h"

namespace flashattn::cpu_reference {

// params arrive validated and normalised (src/api); the oracle computes everything in double
// and rounds once, on the store to params.dtype.
Status forward(const ForwardParams& params) {
  std::vector<reference::SequenceBounds> sequences;
  if (Status status = reference::sequence_bounds(params, &sequences); !status.ok()) return status;
  reference::ForwardResult result;
  if (Status status = reference::forward(params, reference::Precision::fp64, &result);
      !status.ok()) {
    return status;
  }
  using reference::TensorSide;
  reference::scatter_tensor(
      params, sequences, TensorSide::query, result.out,
      reference::dense_shape(params, TensorSide::query, params.heads_q, params.head_dim_v),
      params.out);
  if (params.lse.data != nullptr) reference::scatter_lse(params, sequences, result.lse, params.lse);
  if (!result.dropout_mask.empty()) {
    std::copy(result.dropout_mask.begin(), result.dropout_mask.end(), params.dropout_mask);
  }
  return Status::Ok();
}

Status backward(const BackwardParams& params) {
  std::vector<reference::SequenceBounds> sequences;
  if (Status status = reference::sequence_bounds(params, &sequences); !status.ok()) return status;
  reference::BackwardResult result;
  // D = rowsum(dout * out) from the oracle's own fp64 out: the exact gradient of the inputs.
  if (Status status = reference::backward(params, reference::Precision::fp64, &result);
      !status.ok()) {
    return status;
  }
  using reference::TensorSide;
  reference::scatter_tensor(
      params, sequences, TensorSide::query, result.dq,
      reference::dense_shape(params, TensorSide::query, params.heads_q, params.head_dim),
      params.dq);
  reference::scatter_tensor(
      params, sequences, TensorSide::key, result.dk,
      reference::dense_shape(params, TensorSide::key, params.heads_kv, params.head_dim), params.dk);
  reference::scatter_tensor(
      params, sequences, TensorSide::key, result.dv,
      reference::dense_shape(params, TensorSide::key, params.heads_kv, params.head_dim_v),
      params.dv);
  return Status::Ok();
}

}  // namespace flashattn::cpu_reference
