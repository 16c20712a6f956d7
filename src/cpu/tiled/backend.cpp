// The cpu_tiled backend's support check: every valid problem on the CPU runs here.
#include <string>

#include "api/backends.h"

namespace flashattn::cpu_tiled {
namespace {

// Everything the contract allows on the CPU is supported (any head dim, dtype, mask, feature,
// layout); only the device can rule this backend out.
std::string reason_for(const AttentionArgs& args) {
  if (args.device != Device::cpu) {
    return std::string("runs on device cpu only, got ") + to_string(args.device);
  }
  return "";
}

}  // namespace

std::string unsupported_reason(const ForwardParams& params) {
  return reason_for(params);
}
std::string unsupported_reason(const BackwardParams& params) {
  return reason_for(params);
}

}  // namespace flashattn::cpu_tiled
