// PLACEHOLDER (replaced by the tiled CPU work of issue 3).
#include "api/backends.h"

namespace flashattn::cpu_tiled {
std::string unsupported_reason(const ForwardParams&) { return "not built yet"; }
std::string unsupported_reason(const BackwardParams&) { return "not built yet"; }
Status forward(const ForwardParams&) { return Status::Unsupported("cpu_tiled: not built yet"); }
Status backward(const BackwardParams&) { return Status::Unsupported("cpu_tiled: not built yet"); }
}  // namespace flashattn::cpu_tiled
