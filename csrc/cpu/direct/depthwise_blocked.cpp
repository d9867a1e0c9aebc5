// The three passes of the blocked depthwise kernels (depthwise_blocked.h):
// weights regrouped per block of 16 channels, then one task per (image,
// block) for forward and grad input, one per block for grad weight.
#include "depthwise_blocked.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <vector>

#include "../gemm/conv_gemm.h"
#include "../float_arithmetic.h"

namespace conv_ext::cpu {
namespace {

int64_t blocks(int64_t C) { return (C + kDwBlock - 1) / kDwBlock; }

// Weight (C, 1, R, S) as [block][r][s][16 channels] float, zeros past C.
template <typename T>
std::vector<float> block_taps(const at::Tensor& weight, const ConvShape& s) {
  const int64_t RS = s.R * s.S;
  std::vector<float> wt(blocks(s.C) * RS * kDwBlock, 0.f);
  const T* w = weight.const_data_ptr<T>();
  const WeightView ws(weight);
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t t = 0; t < s.S; ++t)
        wt[((c / kDwBlock) * RS + r * s.S + t) * kDwBlock + c % kDwBlock] =
            static_cast<float>(w[c * ws.s0 + r * ws.s2 + t * ws.s3]);
  return wt;
}

// forward and grad input at unit stride: dst = init + correlation of src
// (H x W) over g, per (image, block).
template <typename T>
void correlate_all(const T* src, const Strides4& ss, int64_t H, int64_t W, T* dst,
                   const Strides4& ds, const ConvShape& s, const DirectGeom& g,
                   const PadGeom& pg, const std::vector<float>& wt, const float* init,
                   Isa isa, const Epilogue* epilogue) {
  const int64_t nb = blocks(s.C), RS = s.R * s.S;
  std::vector<int64_t> pix(g.P * g.Q), tap(RS);
  window_offsets(g, pix.data(), tap.data());
  at::parallel_for(0, s.N * nb, grain_for(kDwBlock * RS * g.P * g.Q),
                   [&](int64_t begin, int64_t end) {
    float* work = scratch<float>(0, dw_work_size(g, pg));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / nb, blk = task % nb, c0 = blk * kDwBlock;
      const int64_t nc = std::min(kDwBlock, s.C - c0);
      T* d = dst + n * ds.d0 + c0 * ds.d1;
      const DwTask<T> t{src + n * ss.d0 + c0 * ss.d1, ss.d1, ss.d2, ss.d3, H, W,
                     d, ds.d1, ds.d2, ds.d3, nc, wt.data() + blk * RS * kDwBlock,
                     init ? init + c0 : nullptr, g, pg, pix.data(), tap.data()};
      dw_blocked_correlate(isa, t, work);
      // The output is freshly allocated and dense: a plane's pixels are
      // ds.d3 apart.
      if (epilogue) activate_tile(d, nc, g.P * g.Q, ds.d1, ds.d3, *epilogue);
    }
  });
}

template <typename T>
void forward_typed(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const ConvShape& s, at::Tensor& output, Isa isa, const Epilogue& epilogue) {
  const std::vector<float> wt = block_taps<T>(weight, s);
  std::vector<float> b = bias_values<float, T>(bias, s.K);
  b.resize(blocks(s.C) * kDwBlock, 0.f);
  PadGeom pg;
  const DirectGeom g = direct_geom(
      s.P, s.Q, s.stride_h, -s.pad_h, s.dil_h, s.R, s.stride_w, -s.pad_w, s.dil_w, s.S, pg);
  correlate_all(input.const_data_ptr<T>(), Strides4(input), s.H, s.W,
                output.mutable_data_ptr<T>(), Strides4(output), s, g, pg, wt, b.data(),
                isa, &epilogue);
}

// Grad input pixel h takes grad_output p = (h + pad - r*dil) / stride. At
// unit stride that is a correlation with offset +pad and dilation -dil; at
// larger strides each grad input pixel gathers the taps that reach it
// (no tap the stride skips is multiplied).
template <typename T>
void backward_input_typed(
    const at::Tensor& grad_output, const at::Tensor& weight, const ConvShape& s,
    at::Tensor& grad_input, Isa isa) {
  const std::vector<float> wt = block_taps<T>(weight, s);
  const T* dy = grad_output.const_data_ptr<T>();
  T* dx = grad_input.mutable_data_ptr<T>();
  const Strides4 ys(grad_output), xs(grad_input);
  PadGeom pg;
  if (s.stride_h == 1 && s.stride_w == 1) {
    const DirectGeom g =
        direct_geom(s.H, s.W, 1, s.pad_h, -s.dil_h, s.R, 1, s.pad_w, -s.dil_w, s.S, pg);
    correlate_all(dy, ys, s.P, s.Q, dx, xs, s, g, pg, wt, nullptr, isa, nullptr);
    return;
  }
  const DirectGeom g = direct_geom(
      s.P, s.Q, s.stride_h, -s.pad_h, s.dil_h, s.R, s.stride_w, -s.pad_w, s.dil_w, s.S, pg);
  const int64_t nb = blocks(s.C), RS = s.R * s.S;
  at::parallel_for(0, s.N * nb, grain_for(kDwBlock * RS * s.P * s.Q),
                   [&](int64_t begin, int64_t end) {
    float* work = scratch<float>(0, dw_work_size(g, pg));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / nb, blk = task % nb, c0 = blk * kDwBlock;
      const DwTask<T> t{dy + n * ys.d0 + c0 * ys.d1, ys.d1, ys.d2, ys.d3, s.H, s.W,
                     dx + n * xs.d0 + c0 * xs.d1, xs.d1, xs.d2, xs.d3,
                     std::min(kDwBlock, s.C - c0), wt.data() + blk * RS * kDwBlock,
                     nullptr, g, pg, nullptr, nullptr};
      dw_blocked_strided_input(isa, t, work);
    }
  });
}

// One task per block of channels, summing the images in order.
template <typename T>
void backward_weight_typed(
    const at::Tensor& grad_output, const at::Tensor& input, const ConvShape& s,
    at::Tensor& grad_weight, Isa isa) {
  const T* x = input.const_data_ptr<T>();
  const T* dy = grad_output.const_data_ptr<T>();
  T* dw = grad_weight.mutable_data_ptr<T>();
  const Strides4 xs(input), ys(grad_output);
  const WeightView ws(grad_weight);
  PadGeom pg;
  const DirectGeom g = direct_geom(
      s.P, s.Q, s.stride_h, -s.pad_h, s.dil_h, s.R, s.stride_w, -s.pad_w, s.dil_w, s.S, pg);
  const int64_t nb = blocks(s.C), RS = s.R * s.S;
  std::vector<int64_t> pix(g.P * g.Q), tap(RS);
  window_offsets(g, pix.data(), tap.data());
  at::parallel_for(0, nb, grain_for(s.N * kDwBlock * RS * s.P * s.Q),
                   [&](int64_t begin, int64_t end) {
    float* work = scratch<float>(0, dw_work_size(g, pg));
    float* acc = scratch<float>(1, RS * kDwBlock);
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t c0 = blk * kDwBlock, nc = std::min(kDwBlock, s.C - c0);
      std::fill_n(acc, RS * kDwBlock, 0.f);
      for (int64_t n = 0; n < s.N; ++n) {
        const DwTask<T> t{x + n * xs.d0 + c0 * xs.d1, xs.d1, xs.d2, xs.d3, s.H, s.W,
                       nullptr, 0, 0, 0, nc, nullptr, nullptr, g, pg, pix.data(),
                       tap.data()};
        dw_blocked_dot(isa, t, dy + n * ys.d0 + c0 * ys.d1, ys.d1, ys.d2, ys.d3, acc, work);
      }
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t t = 0; t < s.S; ++t)
            dw[(c0 + c) * ws.s0 + r * ws.s2 + t * ws.s3] =
                static_cast<T>(acc[(r * s.S + t) * kDwBlock + c]);
    }
  });
}

}  // namespace

// float32, bfloat16 and half (heuristic.h: use_depthwise_blocked), each
// entry named in torch.profiler's trace: the tests check that it runs.
void depthwise_blocked_forward(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const ConvShape& s, at::Tensor& output, Isa isa, const Epilogue& epilogue) {
  RECORD_FUNCTION("conv_ext::cpu::depthwise_blocked_forward", std::vector<c10::IValue>());
  CONV_EXT_DISPATCH_FLOAT_ARITHMETIC(input.scalar_type(), "depthwise_blocked_forward", [&] {
    forward_typed<scalar_t>(input, weight, bias, s, output, isa, epilogue);
  });
}

void depthwise_blocked_backward_input(
    const at::Tensor& grad_output, const at::Tensor& weight, const ConvShape& s,
    at::Tensor& grad_input, Isa isa) {
  RECORD_FUNCTION("conv_ext::cpu::depthwise_blocked_backward_input", std::vector<c10::IValue>());
  CONV_EXT_DISPATCH_FLOAT_ARITHMETIC(
      grad_output.scalar_type(), "depthwise_blocked_backward_input", [&] {
        backward_input_typed<scalar_t>(grad_output, weight, s, grad_input, isa);
      });
}

void depthwise_blocked_backward_weight(
    const at::Tensor& grad_output, const at::Tensor& input, const ConvShape& s,
    at::Tensor& grad_weight, Isa isa) {
  RECORD_FUNCTION("conv_ext::cpu::depthwise_blocked_backward_weight", std::vector<c10::IValue>());
  CONV_EXT_DISPATCH_FLOAT_ARITHMETIC(input.scalar_type(), "depthwise_blocked_backward_weight", [&] {
    backward_weight_typed<scalar_t>(grad_output, input, s, grad_weight, isa);
  });
}

}  // namespace conv_ext::cpu
