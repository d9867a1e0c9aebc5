// Grad weight on the CPU: a reduction over every output pixel of every image.
// Paths (heuristic.h): direct (depthwise_direct.h) for thin groups, else the
// packed GEMM with the pixels as its depth, per group:
//   NCHW   dW^T[C/G*R*S x K/G] += patches^T[taps x pixels] * dy^T[pixels x K/G]
//          (patch panels are runs of pixels along a row, per tap)
//   NHWC   dW[K/G x R*S*C/G]   += dy[K/G x pixels] * patches[pixels x taps]
//          (patch panels are runs of channels, per pixel)
// The depth (pixels of all images) is blocked across image boundaries; the
// taps are cut between the threads, each summing every pixel into its own
// rows: no atomics, no reduction pass, the same bits on every run and for
// every thread count.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../conv_shape.h"
#include "gemm/conv_gemm.h"
#include "direct/depthwise_direct.h"
#include "direct/depthwise_blocked.h"
#include "direct/grouped_blocked.h"
#include "float_arithmetic.h"
#include "direct/depthwise_nhwc.h"
#include "gemm/gemm_few_pixels.h"
#include "heuristic.h"
#include "window/window_dot.h"
#include "winograd/winograd.h"

namespace conv_ext::cpu {
namespace {

// pack_t: the panels' type, bfloat16 pairs for bfloat16 on the pair
// kernels (heuristic.h, bf16_pairs), else the accumulator type.
template <typename scalar_t, typename pack_t = at::opmath_type<scalar_t>>
void backward_weight_gemm(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const ConvShape& s,
    at::Tensor& grad_weight,
    Isa isa) {
  using acc_t = at::opmath_type<scalar_t>;
  const GemmKernel<acc_t, pack_t> kernel = select_gemm<acc_t, pack_t>(isa);
  const int vec_isa = vec_level(isa);
  const int64_t MR = kernel.mr, NR = kernel.nr, KC = kernel.kc;
  const int64_t Cg = s.Cg(), Kg = s.Kg(), CRS = Cg * s.R * s.S;
  const int64_t PQ = s.P * s.Q, depth = s.N * PQ;
  // NHWC: channels-major with runs of channels; NCHW: taps-major.
  const bool rsc = channels_contiguous(input);
  // 1 x 1 view of grad_output: read as runs of channels when those are
  // contiguous (its one tap makes both orders the same).
  const bool dy_rsc = channels_contiguous(grad_output);
  if constexpr (std::is_same_v<scalar_t, acc_t> && std::is_same_v<pack_t, acc_t>) {
    if (!rsc && s.G == 1 && grad_weight.is_contiguous() &&
        few_pixels_weight_grad(s.N, PQ, CRS, NR)) {
      const scalar_t* x = input.const_data_ptr<scalar_t>();
      const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
      const Strides4 xs(input), ys(grad_output);
      // Pixel offsets in a table: dividing by Q per element of the copy
      // below cost as much as a 1 x 1 layer's products (pw_c160_k960_4x4).
      std::vector<int64_t> po(PQ);
      for (int64_t i = 0; i < PQ; ++i) po[i] = i / s.Q * ys.d2 + i % s.Q * ys.d3;
      weight_grad_few_pixels(
          kernel, vec_isa, s.N, PQ,
          [&](int64_t n) {
            return Im2col<scalar_t>{
                x + n * xs.d0, xs.d1, xs.d2, xs.d3, s.C, s.H, s.W, s.Q, s.stride_h,
                s.stride_w, -s.pad_h, -s.pad_w, s.dil_h, s.dil_w, s.R, s.S, false};
          },
          [&](int64_t n, int64_t k, int64_t i) {
            return dy[n * ys.d0 + k * ys.d1 + po[i]];
          },
          s.K, CRS, grad_weight.mutable_data_ptr<scalar_t>());
      return;
    }
    const Strides4 xs(input), ys(grad_output);
    const bool planes = xs.d3 == 1 && xs.d2 == s.W && ys.d3 == 1 && ys.d2 == s.Q;
    if (!rsc && !dy_rsc && s.G == 1 && grad_weight.is_contiguous() && planes &&
        s.R == 1 && s.S == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
        s.pad_w == 0 && weight_grad_1x1_by_rows(s.N, PQ, s.K)) {
      const scalar_t* x = input.const_data_ptr<scalar_t>();
      weight_grad_1x1_rows(
          kernel, vec_isa, s.N, PQ,
          [&](int64_t n) {
            return Im2col<scalar_t>{
                x + n * xs.d0, xs.d1, xs.d2, xs.d3, s.C, s.H, s.W, s.Q, 1, 1, 0, 0, 1, 1, 1, 1,
                false};
          },
          grad_output.const_data_ptr<scalar_t>(), ys.d0, ys.d1, s.K, s.C,
          grad_weight.mutable_data_ptr<scalar_t>());
      return;
    }
  }
  const int64_t M = rsc ? Kg : CRS, N = rsc ? CRS : Kg;
  // bfloat16: rows of the accumulator 64 bytes more than a multiple of
  // 1 KiB apart, so the transposing store below does not read 64 rows that
  // share 2 cache sets (Kg = 512: its conversion loop was 33% of r50_res5_3x3's
  // bfloat16 grad weight).
  const int64_t Mpad = round_up(M, MR);
  const int64_t Npad = round_up(N, NR) +
      (std::is_same_v<pack_t, c10::BFloat16> && round_up(N, NR) % 256 == 0 ? 16 : 0);
  const int64_t gsize = Mpad * Npad;
  // The taps are split between the threads (a fixed cut, in multiples of
  // the panel width): each owns its rows (NCHW) or columns (NHWC) of every
  // group's gradient and sums all pixels into them itself. No partial
  // buffers, no reduction pass, and every element's sum runs in the same
  // order whatever the thread count.
  const int64_t twidth = rsc ? NR : MR;
  const int64_t tpanels = (CRS + twidth - 1) / twidth;
  const int64_t parts = grain_for(depth * CRS * Kg * s.G) > 1
      ? 1
      : std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), s.G * tpanels));
  acc_t* const acc = scratch<acc_t>(3, s.G * gsize);

  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const Strides4 xs(input);
  const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
  const Strides4 ys(grad_output);
  // Blocks of the patch operand: MC taps (NCHW) or NC taps (NHWC).
  const int64_t MC = rsc ? Mpad : std::min(Mpad, round_up(144, MR));
  const int64_t NC = rsc ? std::min(Npad, round_up(192, NR)) : Npad;

  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    pack_t* const abuf = scratch<pack_t>(1, MC * KC);
    pack_t* const bbuf = scratch<pack_t>(2, NC * KC);
    for (int64_t part = begin; part < end; ++part) {
      // Panels [pa, pb) of the (group, tap panel) sequence.
      const int64_t pa = part * s.G * tpanels / parts;
      const int64_t pb = (part + 1) * s.G * tpanels / parts;
      for (int64_t g = pa / tpanels; g <= (pb - 1) / tpanels && pa < pb; ++g) {
        const int64_t t0 = (std::max(pa, g * tpanels) - g * tpanels) * twidth;
        const int64_t t1 = std::min(CRS, (std::min(pb, (g + 1) * tpanels) - g * tpanels) * twidth);
        auto patches = [&](int64_t n) {
          return Im2col<scalar_t>{
              x + n * xs.d0 + g * Cg * xs.d1, xs.d1, xs.d2, xs.d3, Cg, s.H, s.W, s.Q,
              s.stride_h, s.stride_w, -s.pad_h, -s.pad_w, s.dil_h, s.dil_w,
              s.R, s.S, rsc};
        };
        // grad_output as a 1 x 1 patch matrix: taps = its channels.
        auto grads = [&](int64_t n) {
          return Im2col<scalar_t>{
              dy + n * ys.d0 + g * Kg * ys.d1, ys.d1, ys.d2, ys.d3, Kg, s.P, s.Q, s.Q,
              1, 1, 0, 0, 1, 1, 1, 1, dy_rsc};
        };
        acc_t* const cg = acc + g * gsize;
        if (rsc) {
          // dW[Kg x taps t0..t1) = dy[Kg x pixels] * patches[pixels x taps]
          auto pack_a = [&](int64_t, int64_t mc, int64_t pc, int64_t kc) {
            pack_im2col_images<pack_t, scalar_t>(vec_isa, grads, PQ, pc, kc, 0, mc, MR, abuf);
            return Panels<pack_t>{abuf, MR * packed_depth<pack_t>(kc)};
          };
          auto pack_b = [&](int64_t jc, int64_t nc, int64_t pc, int64_t kc) {
            pack_im2col_images<pack_t, scalar_t>(vec_isa, patches, PQ, pc, kc, t0 + jc, nc, NR, bbuf);
            return Panels<pack_t>{bbuf, NR * packed_depth<pack_t>(kc)};
          };
          gemm_packed(kernel, M, t1 - t0, depth, Blocking{MC, NC, KC}, pack_a, pack_b,
                      cg + t0, Npad, false);
        } else {
          // dW^T[taps t0..t1) x Kg] = patches^T[taps x pixels] * dy^T[pixels x Kg]
          auto pack_a = [&](int64_t ic, int64_t mc, int64_t pc, int64_t kc) {
            pack_im2col_images<pack_t, scalar_t>(vec_isa, patches, PQ, pc, kc, t0 + ic, mc, MR, abuf);
            return Panels<pack_t>{abuf, MR * packed_depth<pack_t>(kc)};
          };
          auto pack_b = [&](int64_t, int64_t nc, int64_t pc, int64_t kc) {
            pack_im2col_images<pack_t, scalar_t>(vec_isa, grads, PQ, pc, kc, 0, nc, NR, bbuf);
            return Panels<pack_t>{bbuf, NR * packed_depth<pack_t>(kc)};
          };
          gemm_packed(kernel, t1 - t0, N, depth, Blocking{MC, NC, KC}, pack_a, pack_b,
                      cg + t0 * Npad, Npad, false, /*b_outer=*/true);
        }
      }
    }
  });

  // Store: element (k, tap) sits at row k (NHWC) or row tap (NCHW) of its
  // group's block.
  scalar_t* dw = grad_weight.mutable_data_ptr<scalar_t>();
  const WeightView ws(grad_weight);
  std::vector<int64_t> tofs(CRS);
  tap_offsets(Cg, s.R, s.S, ws.s1, ws.s2, ws.s3, rsc, tofs.data());
  // In 32 x 64 blocks of (channel, tap): the NCHW block is the transpose,
  // and reading it a channel at a time strode 2 KiB per element (19 ms of
  // r50_res5_3x3's 22 ms grad weight went to cache misses there).
  constexpr int64_t kBk = 32, kBt = 64;
  const int64_t kblocks = (Kg + kBk - 1) / kBk;
  at::parallel_for(0, s.G * kblocks, grain_for(kBk * CRS), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t g = task / kblocks, k0 = (task % kblocks) * kBk;
      const int64_t k1 = std::min(Kg, k0 + kBk);
      const acc_t* cg = acc + g * gsize;
      for (int64_t t0 = 0; t0 < CRS; t0 += kBt) {
        const int64_t t1 = std::min(CRS, t0 + kBt);
        for (int64_t kk = k0; kk < k1; ++kk) {
          scalar_t* d = dw + (g * Kg + kk) * ws.s0;
          for (int64_t t = t0; t < t1; ++t)
            d[tofs[t]] = static_cast<scalar_t>(rsc ? cg[kk * Npad + t] : cg[t * Npad + kk]);
        }
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
  if (use_window_weight_grad(s, grad_output, input, grad_weight, isa)) {
    window_backward_weight(grad_output, input, s, grad_weight, isa);
    return grad_weight;
  }
  if (use_winograd(s, s.C, s.K, input, grad_output, isa) && grad_weight.is_contiguous()) {
    const Strides4 xs(input), ys(grad_output);
    CONV_EXT_DISPATCH_FLOAT_ARITHMETIC(input.scalar_type(), "conv2d_backward_weight_winograd", [&] {
      winograd_weight_grad(
          WinogradProblem<scalar_t>{
              input.const_data_ptr<scalar_t>(), xs.d0, xs.d1, xs.d2, s.N, s.C, s.H, s.W,
              nullptr, 0, 0, 0, 0, nullptr, nullptr, ys.d0, ys.d1, ys.d2, s.K, s.P, s.Q,
              s.pad_h, s.pad_w, s.dil_h},
          grad_output.const_data_ptr<scalar_t>(), grad_weight.mutable_data_ptr<scalar_t>(), isa);
    });
    return grad_weight;
  }
  if (use_grouped_blocked(s, input)) {
    grouped_blocked_backward_weight(grad_output, input, s, grad_weight, isa);
    return grad_weight;
  }
  if (!depthwise_nhwc(s, grad_output, input) && use_depthwise_blocked(s, input)) {
    depthwise_blocked_backward_weight(grad_output, input, s, grad_weight, isa);
    return grad_weight;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(),
      "conv2d_backward_weight_cpu", [&] {
        if (depthwise_nhwc(s, grad_output, input)) {
          depthwise_nhwc_backward_weight<scalar_t>(grad_output, input, s, grad_weight);
        } else if (use_direct_grouped(s)) {
          depthwise_direct_backward_weight<scalar_t>(grad_output, input, s, grad_weight, isa);
        } else {
          if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
            const Isa isa_bf16 = cpu_isa_bf16();
            if (bf16_pairs(input, isa_bf16)) {
              backward_weight_gemm<scalar_t, c10::BFloat16>(
                  grad_output, input, s, grad_weight, isa_bf16);
              return;
            }
          }
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
