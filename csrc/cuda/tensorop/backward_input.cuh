// Grad input on tensor cores by phase decomposition: no product is wasted on
// the zeros a strided transposed convolution would insert.
//
// Input row x = phase + i*stride (phase < stride) receives, through tap r,
// grad_output row (x + pad - r*dil) / stride when that divides exactly, which
// holds for r = r0, r0 + T, r0 + 2T, ... (T = stride / gcd(stride, dil)), and
// then the row is i + off(r), off falling by D = dil / gcd(stride, dil) per
// tap. Taken in reverse order the taps read rows i - pad' + j*D: a stride-1
// convolution with dilation D and padding pad' = -off(last tap) (possibly
// negative), over grad_output, with the sub-filter's taps flipped and its
// channel roles swapped (K/G in, C/G out). Each of the stride_h x stride_w
// phases runs the forward kernel (forward.cuh) on that problem and writes
// grad_input[:, :, phase_h::stride_h, phase_w::stride_w] through its
// strides; a phase no tap reaches is zero.
#pragma once

#include <ATen/core/Tensor.h>

#include <numeric>

#include "../../conv_shape.h"
#include "forward.cuh"

namespace conv_ext::cuda::tensorop {

// The taps of one dimension that reach input coordinates of one phase.
struct PhaseTaps {
  int64_t first = 0, count = 0, step = 1;  // r = first + j*step, j < count
  int64_t pad = 0, dil = 1;                // of the stride-1 problem
};

inline PhaseTaps phase_taps(
    int64_t phase, int64_t pad, int64_t dil, int64_t stride, int64_t R) {
  PhaseTaps t;
  const auto reaches = [&](int64_t r) {
    return ((phase + pad - r * dil) % stride + stride) % stride == 0;
  };
  int64_t r0 = 0;
  while (r0 < R && !reaches(r0)) {
    ++r0;
  }
  if (r0 == R) {
    return t;  // count 0
  }
  const int64_t gcd = std::gcd(stride, dil);
  t.first = r0;
  t.step = stride / gcd;
  t.count = (R - 1 - r0) / t.step + 1;
  const int64_t last = r0 + (t.count - 1) * t.step;
  t.pad = -((phase + pad - last * dil) / stride);  // exact division
  t.dil = t.count > 1 ? dil / gcd : 1;
  return t;
}

// weight [K][C/G][R][S] contiguous; grad_input allocated, non-empty.
template <class Tile, typename scalar_t, class Launch>
void launch_backward_input(
    const Launch& launch,
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    const ConvShape& s,
    at::Tensor& grad_input) {
  for (int64_t ph = 0; ph < s.stride_h; ++ph) {
    const PhaseTaps th = phase_taps(ph, s.pad_h, s.dil_h, s.stride_h, s.R);
    for (int64_t pw = 0; pw < s.stride_w; ++pw) {
      const PhaseTaps tw = phase_taps(pw, s.pad_w, s.dil_w, s.stride_w, s.S);
      at::Tensor dx = grad_input.slice(2, ph, s.H, s.stride_h)
                          .slice(3, pw, s.W, s.stride_w);
      if (dx.numel() == 0) {
        continue;
      }
      if (th.count == 0 || tw.count == 0) {
        dx.zero_();
        continue;
      }
      // The phase's filter as a forward weight from K/G to C/G channels:
      // [g*C/G + c][k][j][l] = weight[g*K/G + k][c][r(count-1-j)][s(...)].
      const at::Tensor sub =
          weight
              .slice(2, th.first, th.first + (th.count - 1) * th.step + 1, th.step)
              .slice(3, tw.first, tw.first + (tw.count - 1) * tw.step + 1, tw.step)
              .flip({2, 3})
              .reshape({s.G, s.Kg(), s.Cg(), th.count, tw.count})
              .transpose(1, 2)
              .reshape({s.C, s.Kg(), th.count, tw.count});
      const at::Tensor packed = pack_forward_weight<scalar_t>(sub);
      ConvDims d{};
      d.N = s.N;
      d.C = s.K;
      d.H = s.P;
      d.W = s.Q;
      d.K = s.C;
      d.R = th.count;
      d.S = tw.count;
      d.P = dx.size(2);
      d.Q = dx.size(3);
      d.stride_h = d.stride_w = 1;
      d.pad_h = th.pad;
      d.pad_w = tw.pad;
      d.dil_h = th.dil;
      d.dil_w = tw.dil;
      d.G = s.G;
      d.Cg = s.Kg();
      d.Kg = s.Cg();
      const auto p = make_forward_params<Tile, scalar_t>(
          grad_output.const_data_ptr<scalar_t>(), strides_of(grad_output),
          packed, nullptr, 0, dx.mutable_data_ptr<scalar_t>(), strides_of(dx),
          d, Epilogue{});
      launch_forward_params<Tile>(launch, p);
    }
  }
}

}  // namespace conv_ext::cuda::tensorop
