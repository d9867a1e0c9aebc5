// Portable vectors for the kernels that are written once and built per
// instruction set (winograd_vec.cpp, window_dot_vec.cpp): a GCC/Clang vector
// of B floats, whose width is the register width of the target the caller
// is compiled for, with unaligned loads and stores. The same code runs with
// V = float for the tails.
#pragma once

namespace conv_ext::cpu::simd {

template <int B>
struct Lanes {
  typedef float type __attribute__((vector_size(B * sizeof(float))));
};

template <typename V>
inline V load(const float* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

template <typename V>
inline void store(float* p, V v) {
  __builtin_memcpy(p, &v, sizeof v);
}

}  // namespace conv_ext::cpu::simd
