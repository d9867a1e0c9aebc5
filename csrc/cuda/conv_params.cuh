// Plain data handed to the kernels by value: sizes and element strides as
// int64_t, and divisors prepared on the host. No ATen types cross into
// device code, so every kernel reads as arithmetic on raw pointers.
#pragma once

#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cstdint>

#include "../conv_shape.h"

namespace conv_ext::cuda {

// Element strides of a 4-D tensor in its logical dimension order, so any
// layout (contiguous, channels_last, permuted, sliced) is read the same way.
struct Strides4 {
  int64_t d0, d1, d2, d3;
};

inline Strides4 strides_of(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// ConvShape (csrc/conv_shape.h) as plain device-side data.
struct ConvDims {
  int64_t N, C, H, W;  // input
  int64_t K, R, S;     // output channels, kernel height and width
  int64_t P, Q;        // output height and width
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int64_t G, Cg, Kg;  // groups, input and output channels per group
};

inline ConvDims dims_of(const ConvShape& s) {
  return {s.N,        s.C,        s.H,     s.W,     s.K,     s.R,
          s.S,        s.P,        s.Q,     s.stride_h, s.stride_w, s.pad_h,
          s.pad_w,    s.dil_h,    s.dil_w, s.G,     s.Cg(),  s.Kg()};
}

// Division by a divisor fixed for the whole launch. GPUs have no integer
// divider: n / d compiles to a ~20-instruction sequence, and the implicit
// GEMMs split a flat index into (channel, tap row, tap column) for every
// element they fetch. A multiply-high and a shift do it instead
// (Granlund & Montgomery, "Division by invariant integers using
// multiplication", 1994). Exact for n < 2^31 and 1 <= d < 2^31, which the
// host guarantees before it chooses this form.
struct FastDivmod {
  uint32_t divisor;
  uint32_t multiplier;
  uint32_t shift;

  FastDivmod() = default;
  explicit FastDivmod(uint32_t d) : divisor(d), multiplier(0), shift(0) {
    TORCH_INTERNAL_ASSERT(d >= 1 && d < (uint32_t{1} << 31), "divisor ", d);
    while ((uint64_t{1} << shift) < d) {
      ++shift;
    }
    // multiplier = floor(2^32 * (2^shift - d) / d) + 1, which is < 2^32.
    const uint64_t m =
        ((uint64_t{1} << 32) * ((uint64_t{1} << shift) - d)) / d + 1;
    multiplier = static_cast<uint32_t>(m);
  }

  C10_HOST_DEVICE uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t hi = __umulhi(n, multiplier);
#else
    const uint32_t hi =
        static_cast<uint32_t>((uint64_t{n} * multiplier) >> 32);
#endif
    // hi <= n < 2^31, so the sum does not wrap.
    return (hi + n) >> shift;
  }
};

// v / d for v >= 0, d >= 1. A 64-bit `/` compiles to a call of a division
// subroutine, and around that call ptxas keeps live values on the stack
// (the float64 direct grad input had 37 LDL/STL from it, the float64 GEMM
// grad weight 2). Values that fit 32 bits, every realistic coordinate, take
// the inline 32-bit division; the rest a shift-and-subtract loop, also
// inline, so no kernel that uses this needs a stack frame.
C10_HOST_DEVICE inline int64_t div_nonnegative(int64_t v, int64_t d) {
  if (((v | d) >> 32) == 0) {
    return static_cast<uint32_t>(v) / static_cast<uint32_t>(d);
  }
  const uint64_t n = static_cast<uint64_t>(v);
  const uint64_t m = static_cast<uint64_t>(d);
  uint64_t q = 0, r = 0;
  for (int bit = 63; bit >= 0; --bit) {
    r = (r << 1) | ((n >> bit) & 1);
    if (r >= m) {
      r -= m;
      q |= uint64_t{1} << bit;
    }
  }
  return static_cast<int64_t>(q);
}

// The same interface for either index width: Divmod<uint32_t> when every
// dividend of a launch is below 2^31 (the common case), Divmod<int64_t> for
// tensors past 2^31 elements.
template <typename index_t>
struct Divmod;

template <>
struct Divmod<uint32_t> {
  FastDivmod fast;
  Divmod() = default;
  explicit Divmod(int64_t d) : fast(static_cast<uint32_t>(d)) {}
  C10_HOST_DEVICE uint32_t div(uint32_t n) const { return fast.div(n); }
  C10_HOST_DEVICE uint32_t mod(uint32_t n, uint32_t quotient) const {
    return n - quotient * fast.divisor;
  }
};

template <>
struct Divmod<int64_t> {
  int64_t divisor;
  Divmod() = default;
  explicit Divmod(int64_t d) : divisor(d) {}
  C10_HOST_DEVICE int64_t div(int64_t n) const { return n / divisor; }
  C10_HOST_DEVICE int64_t mod(int64_t n, int64_t quotient) const {
    return n - quotient * divisor;
  }
};

// Whether a flat index over `count` elements, and every divisor used to
// split it, fit the 32-bit form of Divmod.
inline bool fits_uint31(int64_t count) {
  return count < (int64_t{1} << 31);
}

}  // namespace conv_ext::cuda
