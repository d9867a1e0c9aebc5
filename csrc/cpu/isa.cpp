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

// BW and VL come with BF16 on every CPU that has it (Cooper Lake, Sapphire
// Rapids, Zen 4); they are checked because the bfloat16 packers use their
// 16-bit shuffles.
bool has_avx512bf16() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool yes = has_avx512f() && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  return yes;
#else
  return false;
#endif
}

bool env_is(const char* env, const char* value) {
  return env != nullptr && std::strcmp(env, value) == 0;
}

}  // namespace

Isa cpu_isa_bf16() {
  const char* env = std::getenv("CONV_EXT_CPU_ISA");
  if (env_is(env, "scalar")) {
    return Isa::kScalar;
  }
  const bool cap_avx2 = env_is(env, "avx2");
  const bool cap_avx512 = env_is(env, "avx512");
  if (!cap_avx2 && !cap_avx512 && has_avx512bf16()) {
    return Isa::kAvx512Bf16;
  }
  if (!cap_avx2 && has_avx512f()) {
    return Isa::kAvx512;
  }
  return has_avx2_fma() ? Isa::kAvx2 : Isa::kScalar;
}

Isa cpu_isa() {
  const Isa isa = cpu_isa_bf16();
  return isa == Isa::kAvx512Bf16 ? Isa::kAvx512 : isa;
}

}  // namespace conv_ext::cpu
