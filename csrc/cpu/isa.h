// Which instruction set the CPU kernels use, decided at run time so that the
// library itself is built for the baseline x86-64 (or any other) target.
//
// CONV_EXT_CPU_ISA caps the choice: "scalar" forces the portable kernels
// (the tests use it to exercise them on machines with vector units), "avx2"
// stops at AVX2 + FMA, "avx512" at AVX-512F (bfloat16 then widens to float
// instead of using the dot-product instructions), unset or "auto" takes the
// best the CPU supports (AVX-512 with BF16 dot products, AVX-512F, then
// AVX2 + FMA). It is read on every call, so it can be flipped between calls
// in one process.
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

// Ordered: each level includes the ones before it. kAvx512Bf16 is AVX-512F
// with BW, VL and BF16 (vdpbf16ps: bfloat16 pairs dotted into float lanes).
enum class Isa { kScalar, kAvx2, kAvx512, kAvx512Bf16 };

// The level for kernels that have no use for bfloat16 dot products (every
// float, double and half kernel): never kAvx512Bf16, which reads as kAvx512
// here, so code that compares with kAvx512 keeps its vector kernels.
Isa cpu_isa();

// The level for bfloat16 GEMMs: cpu_isa(), or kAvx512Bf16 where the CPU has
// it and CONV_EXT_CPU_ISA does not cap below it.
Isa cpu_isa_bf16();

}  // namespace conv_ext::cpu
