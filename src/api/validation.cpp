// Argument checks run before any work: each failure names the argument, expected and actual.
// Scalar checks live in validate_{sizes,varlen,options}.cpp, operand checks in
// validate_tensor.cpp; this file lists what forward and backward require, in order.
#include "api/validation.h"

#include "api/normalize.h"
#include "api/validate_args.h"
#include "api/validate_common.h"
#include "api/validate_tensor.h"

namespace flashattn::detail {
namespace {

TensorExtents query_extents(const AttentionArgs& args, int64_t dim) {
  const bool packed = is_varlen(args);
  return {args.batch, packed ? args.total_q : args.seqlen_q, args.heads_q, dim, packed};
}

TensorExtents key_extents(const AttentionArgs& args, int64_t dim) {
  const bool packed = is_varlen(args);
  return {args.batch, packed ? args.total_k : args.seqlen_k, args.heads_kv, dim, packed};
}

// Scalars first (sizes must be sane before any extent is derived from them), then the
// operands. Unsupported combinations are left to the caller's last step.
Status check_shared(const AttentionArgs& args) {
  if (Status status = check_enums(args); !status.ok()) return status;
  if (Status status = check_sizes(args); !status.ok()) return status;
  if (Status status = check_varlen(args); !status.ok()) return status;
  if (Status status = check_options(args); !status.ok()) return status;
  const int64_t dim_v = value_head_dim(args);
  if (Status status =
          check_tensor("q", args.q, query_extents(args, args.head_dim), args.dtype, Access::read);
      !status.ok()) {
    return status;
  }
  if (Status status =
          check_tensor("k", args.k, key_extents(args, args.head_dim), args.dtype, Access::read);
      !status.ok()) {
    return status;
  }
  return check_tensor("v", args.v, key_extents(args, dim_v), args.dtype, Access::read);
}

// uint8 [batch, heads_q, seqlen_q, seqlen_k], contiguous: only its size can be wrong.
Status check_dropout_mask(const ForwardParams& params) {
  if (params.dropout_mask == nullptr) return Status::Ok();
  int64_t elements = 0;
  if (!checked_product({params.batch, params.heads_q, params.seqlen_q, params.seqlen_k},
                       &elements)) {
    return invalid(
        "dropout_mask",
        "shape " + format_list({params.batch, params.heads_q, params.seqlen_q, params.seqlen_k}) +
            " has more elements than int64 can count");
  }
  return Status::Ok();
}

Status check_workspace(const BackwardParams& params) {
  if (params.workspace != nullptr && params.workspace_bytes == 0) {
    return invalid("workspace", "expected workspace_bytes > 0 with a non-null workspace, got 0");
  }
  return Status::Ok();
}

}  // namespace

Status validate_forward_args(const ForwardParams& params) {
  if (Status status = check_shared(params); !status.ok()) return status;
  const int64_t dim_v = value_head_dim(params);
  if (Status status = check_tensor("out", params.out, query_extents(params, dim_v), params.dtype,
                                   Access::write);
      !status.ok()) {
    return status;
  }
  if (Status status = check_lse(params.lse, params, Access::write, /*required=*/false);
      !status.ok()) {
    return status;
  }
  if (Status status = check_dropout_mask(params); !status.ok()) return status;
  return check_support(params);
}

Status validate_backward_args(const BackwardParams& params) {
  if (Status status = check_shared(params); !status.ok()) return status;
  if (Status status = check_workspace(params); !status.ok()) return status;
  const int64_t dim = params.head_dim;
  const int64_t dim_v = value_head_dim(params);
  struct Operand {
    const char* name;
    const TensorRef& tensor;
    TensorExtents extents;
    Access access;
  };
  const Operand operands[] = {
      {"out", params.out, query_extents(params, dim_v), Access::read},
      {"dout", params.dout, query_extents(params, dim_v), Access::read},
      {"dq", params.dq, query_extents(params, dim), Access::write},
      {"dk", params.dk, key_extents(params, dim), Access::write},
      {"dv", params.dv, key_extents(params, dim_v), Access::write},
  };
  for (const Operand& operand : operands) {
    if (Status status = check_tensor(operand.name, operand.tensor, operand.extents, params.dtype,
                                     operand.access);
        !status.ok()) {
      return status;
    }
  }
  if (Status status = check_lse(params.lse, params, Access::read, /*required=*/true);
      !status.ok()) {
    return status;
  }
  return check_support(params);
}

}  // namespace flashattn::detail
