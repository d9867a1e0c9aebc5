// Grad weight on the CPU: a reduction over every output pixel of every image.
// Paths (heuristic.h): direct (depthwise_direct.h) for thin groups, else the
// packed GEMM with the pixels as its depth, per group:
//   NCHW   dW^T[C/G*R*S x K/G] += patches^T[taps x pixels] * dy^T[pixels x K/G]
//          (patch panels are runs of pixels along a row, per tap)
//   NHWC   dW[K/G x R*S*C/G]   += dy[K/G x pixels] * patches[pixels x taps]
//          (patch panels are runs of channels, per pixel)
// The (image, pixel block) work items are cut into one fixed contiguous
// range per thread, each summed into its own buffer; the buffers are added in
// a fixed order: no atomics, no false sharing, the same bits on every run.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../conv_shape.h"
#include "conv_gemm.h"
#include "depthwise_direct.h"
#include "heuristic.h"

namespace conv_ext::cpu {
namespace {

template <typename scalar_t>
void backward_weight_gemm(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const ConvShape& s,
    at::Tensor& grad_weight,
    Isa isa) {
  using acc_t = at::opmath_type<scalar_t>;
  const GemmKernel<acc_t> kernel = select_microkernel<acc_t>(isa);
  const int64_t MR = kernel.mr, NR = kernel.nr;
  const int64_t Cg = s.Cg(), Kg = s.Kg(), CRS = Cg * s.R * s.S;
  const int64_t PQ = s.P * s.Q;
  const int64_t KC = kernel.kc;
  // NHWC: channels-major with runs of channels; NCHW: taps-major.
  const bool rsc = channels_contiguous(input);
  const int64_t M = rsc ? Kg : CRS, N = rsc ? CRS : Kg;
  const int64_t Mpad = round_up(M, MR), Npad = round_up(N, NR);
  const int64_t gsize = Mpad * Npad;

  const int64_t blocks = (PQ + KC - 1) / KC;
  const int64_t work = s.N * blocks;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), work));
  std::vector<acc_t> partial(chunks * s.G * gsize);

  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const Strides4 xs(input);
  const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
  const Strides4 ys(grad_output);
  // Blocks of the patch operand: MC taps (NCHW) or NC taps (NHWC).
  const int64_t MC = rsc ? Mpad : std::min(Mpad, round_up(144, MR));
  const int64_t NC = rsc ? std::min(Npad, round_up(192, NR)) : Npad;

  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> abuf(MC * KC), bbuf(NC * KC);
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      acc_t* acc = partial.data() + chunk * s.G * gsize;
      bool first = true;
      for (int64_t item = chunk * work / chunks; item < (chunk + 1) * work / chunks; ++item) {
        const int64_t n = item / blocks;
        const int64_t pq0 = (item % blocks) * KC;
        const int64_t npix = std::min(KC, PQ - pq0);
        for (int64_t g = 0; g < s.G; ++g) {
          const Im2col<scalar_t> patches{
              x + n * xs.d0 + g * Cg * xs.d1, xs.d1, xs.d2, xs.d3, Cg, s.H, s.W, s.Q,
              s.stride_h, s.stride_w, -s.pad_h, -s.pad_w, s.dil_h, s.dil_w,
              s.R, s.S, rsc};
          // grad_output as a 1 x 1 patch matrix: taps = its channels.
          const Im2col<scalar_t> grads{
              dy + n * ys.d0 + g * Kg * ys.d1, ys.d1, ys.d2, ys.d3, Kg, s.P, s.Q, s.Q,
              1, 1, 0, 0, 1, 1, 1, 1, false};
          const Im2col<scalar_t>& a_src = rsc ? grads : patches;
          const Im2col<scalar_t>& b_src = rsc ? patches : grads;
          auto pack_a = [&](int64_t ic, int64_t mc, int64_t pc, int64_t kc) {
            pack_im2col(a_src, pq0 + pc, kc, ic, mc, false, MR, abuf.data());
            return Panels<acc_t>{abuf.data(), MR * kc};
          };
          auto pack_b = [&](int64_t jc, int64_t nc, int64_t pc, int64_t kc) {
            pack_im2col(b_src, pq0 + pc, kc, jc, nc, false, NR, bbuf.data());
            return Panels<acc_t>{bbuf.data(), NR * kc};
          };
          gemm_packed(
              kernel, M, N, npix, Blocking{MC, NC, KC}, pack_a, pack_b,
              acc + g * gsize, Npad, !first, /*b_outer=*/!rsc);
        }
        first = false;
      }
      if (first) std::fill(acc, acc + s.G * gsize, acc_t(0));
    }
  });

  // Sum the chunks in order and store: element (k, tap) sits at row k (NHWC)
  // or row tap (NCHW) of its group's block.
  scalar_t* dw = grad_weight.mutable_data_ptr<scalar_t>();
  const WeightView ws(grad_weight);
  std::vector<int64_t> tofs(CRS);
  tap_offsets(Cg, s.R, s.S, ws.s1, ws.s2, ws.s3, rsc, tofs.data());
  at::parallel_for(0, s.K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t g = k / Kg, kk = k % Kg;
      for (int64_t t = 0; t < CRS; ++t) {
        const int64_t e = g * gsize + (rsc ? kk * Npad + t : t * Npad + kk);
        acc_t sum = partial[e];
        for (int64_t chunk = 1; chunk < chunks; ++chunk)
          sum += partial[chunk * s.G * gsize + e];
        dw[k * ws.s0 + tofs[t]] = static_cast<scalar_t>(sum);
      }
    }
  });
}

at::Tensor conv2d_backward_weight_cpu(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    at::IntArrayRef weight_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const ConvShape s = check_backward_weight(
      grad_output, input, weight_size, stride, padding, dilation, groups);
  const auto options = grad_output.options().memory_format(
      output_memory_format(grad_output, input));
  if (s.N == 0 || s.P * s.Q == 0) {
    return at::zeros(weight_size, options);
  }
  at::Tensor grad_weight = at::empty(weight_size, options);
  if (grad_weight.numel() == 0) {
    return grad_weight;
  }
  const Isa isa = cpu_isa();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(),
      "conv2d_backward_weight_cpu", [&] {
        if (use_direct_grouped(s)) {
          depthwise_direct_backward_weight<scalar_t>(grad_output, input, s, grad_weight, isa);
        } else {
          backward_weight_gemm<scalar_t>(grad_output, input, s, grad_weight, isa);
        }
      });
  return grad_weight;
}

}  // namespace
}  // namespace conv_ext::cpu

TORCH_LIBRARY_IMPL(conv_ext, CPU, m) {
  m.impl("conv2d_backward_weight", &conv_ext::cpu::conv2d_backward_weight_cpu);
}
