// Which instruction set the CPU kernels use, decided at run time so that the
// library itself is built for the baseline x86-64 (or any other) target.
//
// CONV_EXT_CPU_ISA caps the choice: "scalar" forces the portable kernels
// (the tests use it to exercise them on machines with vector units), "avx2"
// stops at AVX2 + FMA, unset or "auto" takes the best the CPU supports
// (AVX-512F, then AVX2 + FMA). It is read on every call, so it can be
// flipped between calls in one process.
#pragma once

// Function attributes for the vector builds of portable kernels: `flatten`
// inlines the portable templates a function calls into it, compiled for
// AVX2 + FMA or AVX-512F, while the rest of the library keeps the baseline
// target. Kernels with these attributes run only after cpu_isa() chose them.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CONV_EXT_FLAT_AVX2 __attribute__((target("avx2,fma"), flatten))
#define CONV_EXT_FLAT_AVX512 __attribute__((target("avx512f"), flatten))
#else
#define CONV_EXT_FLAT_AVX2
#define CONV_EXT_FLAT_AVX512
#endif

namespace conv_ext::cpu {

enum class Isa { kScalar, kAvx2, kAvx512 };

Isa cpu_isa();

}  // namespace conv_ext::cpu
