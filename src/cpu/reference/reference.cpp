// The oracle on caller params: validate, normalise, gather to dense doubles, run the naive core.
#include "cpu/reference/reference.h"

#include <string>

#include "api/normalize.h"
#include "cpu/reference/sequences.h"
#include "cpu/reference/strided_io.h"
#include "flashattn/flashattn.h"

namespace flashattn::reference {
namespace {

// q, k, v of validated, normalised args as dense doubles.
struct DenseInputs {
  std::vector<double> q, k, v;
};

DenseInputs gather_inputs(const AttentionArgs& args, const std::vector<SequenceBounds>& sequences) {
  DenseInputs inputs;
  inputs.q = gather_tensor(args, sequences, TensorSide::query, args.q,
                           dense_shape(args, TensorSide::query, args.heads_q, args.head_dim));
  inputs.k = gather_tensor(args, sequences, TensorSide::key, args.k,
                           dense_shape(args, TensorSide::key, args.heads_kv, args.head_dim));
  inputs.v = gather_tensor(args, sequences, TensorSide::key, args.v,
                           dense_shape(args, TensorSide::key, args.heads_kv, args.head_dim_v));
  return inputs;
}

// The oracle dereferences every pointer on the host.
Status require_host(const AttentionArgs& args) {
  if (args.device == Device::cpu) return Status::Ok();
  return Status::InvalidArgument(std::string("device: the reference reads host memory, expected "
                                             "cpu, got ") +
                                 to_string(args.device));
}

}  // namespace

Status forward(const ForwardParams& params, Precision precision, ForwardResult* result) {
  if (Status status = require_host(params); !status.ok()) return status;
  if (Status status = flashattn::validate(params); !status.ok()) return status;
  ForwardParams args = params;
  detail::normalize_args(args);
  std::vector<SequenceBounds> sequences;
  if (Status status = sequence_bounds(args, &sequences); !status.ok()) return status;
  const DenseInputs inputs = gather_inputs(args, sequences);
  uint8_t* mask = nullptr;
  result->dropout_mask.clear();
  if (params.dropout_mask != nullptr && args.dropout_p > 0.0f) {
    result->dropout_mask.resize(
        static_cast<size_t>(args.batch * args.heads_q * args.seqlen_q * args.seqlen_k));
    mask = result->dropout_mask.data();
  }
  return forward_dense(args, precision, inputs.q, inputs.k, inputs.v, result, mask);
}

Status backward(const BackwardParams& params, Precision precision, BackwardResult* result,
                bool use_given_out) {
  if (Status status = require_host(params); !status.ok()) return status;
  if (Status status = flashattn::validate(params); !status.ok()) return status;
  BackwardParams args = params;
  detail::normalize_args(args);
  std::vector<SequenceBounds> sequences;
  if (Status status = sequence_bounds(args, &sequences); !status.ok()) return status;
  const DenseInputs inputs = gather_inputs(args, sequences);
  const DenseShape out_shape = dense_shape(args, TensorSide::query, args.heads_q, args.head_dim_v);
  const std::vector<double> dout =
      gather_tensor(args, sequences, TensorSide::query, args.dout, out_shape);
  std::vector<double> given_out;
  if (use_given_out) {
    given_out = gather_tensor(args, sequences, TensorSide::query, args.out, out_shape);
  }
  return backward_dense(args, precision, inputs.q, inputs.k, inputs.v, dout, given_out, result);
}

}  // namespace flashattn::reference
