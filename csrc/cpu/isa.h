// Which instruction set the CPU kernels use, decided at run time so that the
// library itself is built for the baseline x86-64 (or any other) target.
//
// CONV_EXT_CPU_ISA caps the choice: "scalar" forces the portable kernels
// (the tests use it to exercise them on machines with vector units), "avx2"
// stops at AVX2 + FMA, unset or "auto" takes the best the CPU supports
// (AVX-512F, then AVX2 + FMA). It is read on every call, so it can be
// flipped between calls in one process.
#pragma once

namespace conv_ext::cpu {

enum class Isa { kScalar, kAvx2, kAvx512 };

Isa cpu_isa();

}  // namespace conv_ext::cpu
