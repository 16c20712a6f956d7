// Printable names of the public enums and the library version.
#include "flashattn/flashattn.h"

namespace flashattn {

const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::fp16: return "fp16";
    case DType::bf16: return "bf16";
    case DType::fp32: return "fp32";
  }
  return "unknown-dtype";
}

const char* to_string(Device device) {
  switch (device) {
    case Device::cpu: return "cpu";
    case Device::cuda: return "cuda";
  }
  return "unknown-device";
}

const char* to_string(Backend backend) {
  switch (backend) {
    case Backend::automatic: return "automatic";
    case Backend::cpu_reference: return "cpu_reference";
    case Backend::cpu_tiled: return "cpu_tiled";
    case Backend::cuda_sm80: return "cuda_sm80";
    case Backend::cuda_sm90: return "cuda_sm90";
  }
  return "unknown-backend";
}

const char* to_string(StatusCode code) {
  switch (code) {
    case StatusCode::ok: return "ok";
    case StatusCode::invalid_argument: return "invalid_argument";
    case StatusCode::unsupported: return "unsupported";
    case StatusCode::cuda_error: return "cuda_error";
    case StatusCode::out_of_memory: return "out_of_memory";
    case StatusCode::internal: return "internal";
  }
  return "unknown-status";
}

const char* version() { return "0.1.0"; }

}  // namespace flashattn
