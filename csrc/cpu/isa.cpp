#include "isa.h"

#include <cstdlib>
#include <cstring>

namespace conv_ext::cpu {

namespace {

bool has_avx2_fma() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool yes =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

bool has_avx512f() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool yes = has_avx2_fma() && __builtin_cpu_supports("avx512f");
  return yes;
#else
  return false;
#endif
}

}  // namespace

Isa cpu_isa() {
  const char* env = std::getenv("CONV_EXT_CPU_ISA");
  if (env != nullptr && std::strcmp(env, "scalar") == 0) {
    return Isa::kScalar;
  }
  const bool cap_avx2 = env != nullptr && std::strcmp(env, "avx2") == 0;
  if (!cap_avx2 && has_avx512f()) {
    return Isa::kAvx512;
  }
  return has_avx2_fma() ? Isa::kAvx2 : Isa::kScalar;
}

}  // namespace conv_ext::cpu
