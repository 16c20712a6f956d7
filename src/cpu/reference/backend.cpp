// PLACEHOLDER (replaced by the CPU reference work of issue 3).
#include "api/backends.h"

namespace flashattn::cpu_reference {
Status forward(const ForwardParams&) { return Status::Unsupported("cpu_reference: not built yet"); }
Status backward(const BackwardParams&) { return Status::Unsupported("cpu_reference: not built yet"); }
}  // namespace flashattn::cpu_reference
