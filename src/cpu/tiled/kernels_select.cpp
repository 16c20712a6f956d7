// Chooses the kernel set for this CPU once: AVX-512 when available, else portable.
#include <cstdlib>
#include <string_view>

#include "cpu/tiled/kernels.h"

namespace flashattn::cpu_tiled {
namespace {

const Kernels& select_kernels() {
  const char* forced = std::getenv("FLASHATTN_CPU_ISA");
  if (forced != nullptr && std::string_view(forced) == "portable") return portable_kernels();
  if (const Kernels* avx512 = avx512_kernels(); avx512 != nullptr) return *avx512;
  return portable_kernels();
}

}  // namespace

const Kernels& kernels() {
  static const Kernels& chosen = select_kernels();
  return chosen;
}

}  // namespace flashattn::cpu_tiled
