// Grad input on the CPU. Paths (heuristic.h):
//  - direct (depthwise_direct.h) for depthwise / thin groups;
//  - gather, stride 1: grad_input is the correlation of grad_output with the
//    flipped, transposed kernel, the forward's packed GEMM with
//      src = grad_output, offset +pad, dilation -dil,
//      W'[(k, r, s)][c] = weight[k][c][r][s];
//    each task owns a tile of input pixels: no two threads write one element;
//  - col2im, stride > 1: per image, patch gradients
//      dcol[C/G*R*S x pixels] = W^T[C/G*R*S x K/G] * grad_output[K/G x pixels]
//    added into that image's gradient in a fixed order (one image per task);
//  - col2im over the batch (col2im_batch.h), float and double without
//    groups at stride > 1, or with few pixels at any stride: the same patch
//    gradients for blocks of pixels across images, the threads split by
//    input channel.
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
#include "direct/depthwise_nhwc.h"
#include "float_arithmetic.h"
#include "gemm/col2im_batch.h"
#include "gemm/gemm_few_pixels.h"
#include "heuristic.h"
#include "window/window_forward.h"
#include "winograd/winograd.h"

namespace conv_ext::cpu {
namespace {

// pack_t: the panels' type, bfloat16 pairs for bfloat16 on the pair
// kernels (heuristic.h, bf16_pairs), else the accumulator type.
template <typename scalar_t, typename pack_t = at::opmath_type<scalar_t>>
void backward_input_gather(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    const ConvShape& s,
    at::Tensor& grad_input,
    Isa isa) {
  using acc_t = at::opmath_type<scalar_t>;
  const GemmKernel<acc_t, pack_t> kernel = select_gemm<acc_t, pack_t>(isa);
  const int vec_isa = vec_level(isa);
  const int64_t MR = kernel.mr, NR = kernel.nr;
  const int64_t Cg = s.Cg(), Kg = s.Kg(), KRS = Kg * s.R * s.S;
  const int64_t KRSp = packed_depth<pack_t>(KRS);
  const int64_t HW = s.H * s.W;
  const bool pixels_major = cpu::pixels_major(grad_output, Cg, s.N * s.G, HW, KRS, MR, NR);
  const bool rsc = pixels_major && channels_contiguous(grad_output);

  // W' panels: rows c of each group, depth = taps (k, r, s) in patch order.
  const int64_t wwidth = pixels_major ? NR : MR;
  const int64_t Cpad = round_up(Cg, wwidth);
  const WeightView wv(weight);
  std::vector<int64_t> cofs_w(Cg), tofs(KRS);
  for (int64_t c = 0; c < Cg; ++c) cofs_w[c] = c * wv.s1;
  tap_offsets(Kg, s.R, s.S, wv.s0, wv.s2, wv.s3, rsc, tofs.data());

  const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
  const Strides4 ys(grad_output);
  scalar_t* dx = grad_input.mutable_data_ptr<scalar_t>();
  const Strides4 xs(grad_input);
  auto image = [&](int64_t n, int64_t g) {
    return Im2col<scalar_t>{
        dy + n * ys.d0 + g * Kg * ys.d1, ys.d1, ys.d2, ys.d3, Kg, s.P, s.Q, s.W,
        1, 1, s.pad_h, s.pad_w, -s.dil_h, -s.dil_w, s.R, s.S, rsc};
  };

  const bool by_rows = std::is_same_v<scalar_t, pack_t> && std::is_same_v<scalar_t, acc_t> &&
      pointwise_grad_input_by_rows(s, grad_output, isa);
  if (by_rows || (s.G == 1 && few_pixels(s.N, HW, s.C, MR, NR))) {
    std::vector<int64_t> po(HW), co(s.C);
    for (int64_t i = 0; i < HW; ++i) po[i] = i / s.W * xs.d2 + i % s.W * xs.d3;
    for (int64_t c = 0; c < s.C; ++c) co[c] = c * xs.d1;
    if constexpr (std::is_same_v<scalar_t, pack_t> && std::is_same_v<scalar_t, acc_t>) {
      if (by_rows) {  // W^T in MR-row panels, grad_output in place (heuristic.h)
        // Slot 1: the few-pixel GEMM's own are 0, 2 and 3 (gemm_few_pixels.h).
        scalar_t* const wpack = scratch<scalar_t>(1, round_up(s.C, MR) * s.K);
        pack_table_parallel(weight.const_data_ptr<scalar_t>(), 0, 1, cofs_w.data(), s.C,
                            tofs.data(), s.K, MR, wpack);
        gemm_few_pixels_panels(
            kernel, vec_isa, s.N, HW, [&](int64_t n) { return image(n, 0); }, wpack, s.C, s.K,
            dx, xs.d0, po.data(), co.data());
        return;
      }
    }
    gemm_few_pixels<scalar_t, acc_t>(
        vec_isa, kernel, s.N, HW, [&](int64_t n) { return image(n, 0); },
        weight.const_data_ptr<scalar_t>(), cofs_w.data(), s.C, tofs.data(), KRS,
        static_cast<const acc_t*>(nullptr), dx, xs.d0, po.data(), co.data());
    return;
  }

  pack_t* const wpack = scratch<pack_t>(3, s.G * Cpad * KRSp);
  pack_table_parallel(
      weight.const_data_ptr<scalar_t>(), Kg * wv.s0, s.G, cofs_w.data(), Cg,
      tofs.data(), KRS, wwidth, wpack);
  const int64_t tile = pixel_tile(s.N * s.G, HW, pixels_major ? MR : NR);
  const int64_t tiles = (HW + tile - 1) / tile;
  const int64_t KC = kernel.kc;

  at::parallel_for(0, s.N * s.G * tiles, grain_for(tile * KRS * Cg), [&](int64_t begin, int64_t end) {
    const int64_t rows = pixels_major ? round_up(tile, MR) : round_up(Cg, MR);
    const int64_t ldc = pixels_major ? round_up(Cg, NR) : round_up(tile, NR);
    acc_t* const cbuf = scratch<acc_t>(0, rows * ldc);
    pack_t* const pbuf =
        scratch<pack_t>(1, std::max(round_up(tile, NR), round_up(tile, MR)) * KC);
    std::vector<int64_t> pofs(tile), cofs(Cg);
    for (int64_t c = 0; c < Cg; ++c) cofs[c] = c * xs.d1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (s.G * tiles);
      const int64_t g = (task / tiles) % s.G;
      const int64_t hw0 = (task % tiles) * tile;
      const int64_t npix = std::min(tile, HW - hw0);
      const Im2col<scalar_t> view = image(n, g);
      const pack_t* wg = wpack + g * Cpad * KRSp;
      for (int64_t j = 0; j < npix; ++j) {
        const int64_t h = (hw0 + j) / s.W, w = (hw0 + j) % s.W;
        pofs[j] = h * xs.d2 + w * xs.d3;
      }
      scalar_t* xg = dx + n * xs.d0 + g * Cg * xs.d1;
      const acc_t* none = nullptr;
      acc_t* direct = nullptr;  // as in the forward: the tile is dense in dx
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        const bool dense = pixels_major
            ? xs.d1 == 1 && xs.d2 == s.W * xs.d3
            : xs.d3 == 1 && xs.d2 == s.W;
        if (dense) direct = xg + hw0 * (pixels_major ? xs.d3 : 1);
      }
      if (direct != nullptr) {
        const int64_t ldo = pixels_major ? xs.d3 : xs.d1;
        if (pixels_major) {
          auto pack_a = [&](int64_t ic, int64_t mc, int64_t pc, int64_t kc) {
            pack_patches(vec_isa, view, hw0 + ic, mc, pc, kc, true, MR, pbuf);
            return Panels<pack_t>{pbuf, MR * packed_depth<pack_t>(kc)};
          };
          auto pack_b = [&](int64_t jc, int64_t, int64_t pc, int64_t) {
            return Panels<pack_t>{wg + jc * KRSp + pc * NR, NR * KRSp};
          };
          gemm_packed(kernel, npix, Cg, KRS, Blocking{rows, ldc, KC}, pack_a, pack_b,
                      direct, ldo, false);
        } else {
          auto pack_a = [&](int64_t ic, int64_t, int64_t pc, int64_t) {
            return Panels<pack_t>{wg + ic * KRSp + pc * MR, MR * KRSp};
          };
          auto pack_b = [&](int64_t jc, int64_t nc, int64_t pc, int64_t kc) {
            pack_patches(vec_isa, view, hw0 + jc, nc, pc, kc, true, NR, pbuf);
            return Panels<pack_t>{pbuf, NR * packed_depth<pack_t>(kc)};
          };
          gemm_packed(kernel, Cg, npix, KRS, Blocking{std::min(rows, kWeightRows), ldc, KC},
                      pack_a, pack_b, direct, ldo, false, /*b_outer=*/true);
        }
        continue;
      }
      if (pixels_major) {
        auto pack_a = [&](int64_t ic, int64_t mc, int64_t pc, int64_t kc) {
          pack_patches(vec_isa, view, hw0 + ic, mc, pc, kc, true, MR, pbuf);
          return Panels<pack_t>{pbuf, MR * packed_depth<pack_t>(kc)};
        };
        auto pack_b = [&](int64_t jc, int64_t, int64_t pc, int64_t) {
          return Panels<pack_t>{wg + jc * KRSp + pc * NR, NR * KRSp};
        };
        gemm_packed(
            kernel, npix, Cg, KRS, Blocking{rows, ldc, KC}, pack_a, pack_b,
            cbuf, ldc, false);
        store_tile(cbuf, ldc, npix, Cg, pofs.data(), cofs.data(), none, none, xg);
      } else {
        auto pack_a = [&](int64_t ic, int64_t, int64_t pc, int64_t) {
          return Panels<pack_t>{wg + ic * KRSp + pc * MR, MR * KRSp};
        };
        auto pack_b = [&](int64_t jc, int64_t nc, int64_t pc, int64_t kc) {
          pack_patches(vec_isa, view, hw0 + jc, nc, pc, kc, true, NR, pbuf);
          return Panels<pack_t>{pbuf, NR * packed_depth<pack_t>(kc)};
        };
        gemm_packed(
            kernel, Cg, npix, KRS, Blocking{std::min(rows, kWeightRows), ldc, KC}, pack_a,
            pack_b, cbuf, ldc, false, /*b_outer=*/true);
        store_tile(cbuf, ldc, Cg, npix, cofs.data(), pofs.data(), none, none, xg);
      }
    }
  });
}

template <typename scalar_t, typename pack_t = at::opmath_type<scalar_t>>
void backward_input_col2im(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    const ConvShape& s,
    at::Tensor& grad_input,
    Isa isa) {
  using acc_t = at::opmath_type<scalar_t>;
  const GemmKernel<acc_t, pack_t> kernel = select_gemm<acc_t, pack_t>(isa);
  const int vec_isa = vec_level(isa);
  const int64_t MR = kernel.mr, NR = kernel.nr;
  const int64_t Cg = s.Cg(), Kg = s.Kg(), CRS = Cg * s.R * s.S;
  const int64_t Kgp = packed_depth<pack_t>(Kg);
  const int64_t PQ = s.P * s.Q, HW = s.H * s.W, RS = s.R * s.S;

  // W^T panels: rows = taps (c, r, s), depth = k.
  const int64_t Tpad = round_up(CRS, MR);
  const WeightView wv(weight);
  std::vector<int64_t> tofs(CRS), kofs(Kg);
  tap_offsets(Cg, s.R, s.S, wv.s1, wv.s2, wv.s3, false, tofs.data());
  for (int64_t k = 0; k < Kg; ++k) kofs[k] = k * wv.s0;
  pack_t* const wpack = scratch<pack_t>(3, s.G * Tpad * Kgp);
  pack_table_parallel(
      weight.const_data_ptr<scalar_t>(), Kg * wv.s0, s.G, tofs.data(), CRS,
      kofs.data(), Kg, MR, wpack);

  const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
  const Strides4 ys(grad_output);
  scalar_t* dx = grad_input.mutable_data_ptr<scalar_t>();
  const Strides4 xs(grad_input);
  const int64_t tile = std::min<int64_t>(kMaxTilePixels, round_up(PQ, NR));
  const int64_t KC = kernel.kc;

  at::parallel_for(0, s.N * s.G, grain_for(PQ * CRS * Kg), [&](int64_t begin, int64_t end) {
    const int64_t ldc = round_up(tile, NR);
    acc_t* const cbuf = scratch<acc_t>(0, Tpad * ldc);
    pack_t* const pbuf = scratch<pack_t>(1, ldc * std::min(KC, Kgp));
    acc_t* const image = scratch<acc_t>(2, Cg * HW);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / s.G, g = task % s.G;
      std::fill(image, image + Cg * HW, acc_t(0));
      const Im2col<scalar_t> view{
          dy + n * ys.d0 + g * Kg * ys.d1, ys.d1, ys.d2, ys.d3, Kg, s.P, s.Q, s.Q,
          1, 1, 0, 0, 1, 1, 1, 1, channels_contiguous(grad_output)};
      const pack_t* wg = wpack + g * Tpad * Kgp;
      for (int64_t pq0 = 0; pq0 < PQ; pq0 += tile) {
        const int64_t npix = std::min(tile, PQ - pq0);
        auto pack_a = [&](int64_t ic, int64_t, int64_t pc, int64_t) {
          return Panels<pack_t>{wg + ic * Kgp + pc * MR, MR * Kgp};
        };
        auto pack_b = [&](int64_t jc, int64_t nc, int64_t pc, int64_t kc) {
          pack_patches(vec_isa, view, pq0 + jc, nc, pc, kc, true, NR, pbuf);
          return Panels<pack_t>{pbuf, NR * packed_depth<pack_t>(kc)};
        };
        gemm_packed(
            kernel, CRS, npix, Kg, Blocking{std::min(Tpad, kWeightRows), ldc, KC}, pack_a,
            pack_b, cbuf, ldc, false, /*b_outer=*/true);
        // col2im: tap (c, r, t) of pixel (p, q) lands on (h, w).
        for (int64_t tap = 0; tap < CRS; ++tap) {
          const int64_t c = tap / RS, r = (tap % RS) / s.S, t = tap % s.S;
          const acc_t* crow = cbuf + tap * ldc;
          acc_t* img = image + c * HW;
          for (int64_t j = 0; j < npix; ++j) {
            const int64_t p = (pq0 + j) / s.Q, q = (pq0 + j) % s.Q;
            const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
            const int64_t w = q * s.stride_w - s.pad_w + t * s.dil_w;
            if (h >= 0 && h < s.H && w >= 0 && w < s.W) img[h * s.W + w] += crow[j];
          }
        }
      }
      scalar_t* xg = dx + n * xs.d0 + g * Cg * xs.d1;
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t h = 0; h < s.H; ++h)
          for (int64_t w = 0; w < s.W; ++w)
            xg[c * xs.d1 + h * xs.d2 + w * xs.d3] =
                static_cast<scalar_t>(image[(c * s.H + h) * s.W + w]);
    }
  });
}

// All images' pixels as one GEMM, col2im-added (col2im_batch.h):
// float and double, no groups, taps contiguous per output channel.
template <typename scalar_t>
void backward_input_col2im_batch(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    const ConvShape& s,
    at::Tensor& grad_input,
    Isa isa) {
  const GemmKernel<scalar_t> kernel = select_microkernel<scalar_t>(isa);
  const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
  const Strides4 ys(grad_output), xs(grad_input);
  std::vector<int64_t> po(s.P * s.Q);  // no division per element of the copy
  for (int64_t i = 0; i < s.P * s.Q; ++i) po[i] = i / s.Q * ys.d2 + i % s.Q * ys.d3;
  col2im_batch(
      kernel,
      Col2imShape{s.N, s.C, s.K, s.H, s.W, s.P, s.Q, s.R, s.S, s.stride_h, s.stride_w,
                  s.pad_h, s.pad_w, s.dil_h, s.dil_w},
      [&](int64_t n, int64_t k, int64_t i) {
        return dy[n * ys.d0 + k * ys.d1 + po[i]];
      },
      weight.const_data_ptr<scalar_t>(), weight.stride(0),
      grad_input.mutable_data_ptr<scalar_t>(), xs);
}

at::Tensor conv2d_backward_input_cpu(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    at::IntArrayRef input_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const ConvShape s = check_backward_input(
      grad_output, weight, input_size, stride, padding, dilation, groups);
  const auto options = grad_output.options().memory_format(
      output_memory_format(grad_output, weight));
  if (s.K == 0 || grad_output.numel() == 0) {
    return at::zeros(input_size, options);
  }
  at::Tensor grad_input = at::empty(input_size, options);
  if (grad_input.numel() == 0) {
    return grad_input;
  }
  const Isa isa = cpu_isa();
  if (use_winograd(s, s.K, s.C, grad_output, grad_input, isa)) {
    // The correlation of grad_output with the kernel flipped (r -> 2 - r,
    // s -> 2 - s) and transposed (k <-> c), padded by 2 dil - pad.
    const Strides4 ys(grad_output), xs(grad_input);
    const WeightView wv(weight);
    CONV_EXT_DISPATCH_FLOAT_ARITHMETIC(
        grad_output.scalar_type(), "conv2d_backward_input_winograd", [&] {
          winograd_correlate(
              WinogradProblem<scalar_t>{
                  grad_output.const_data_ptr<scalar_t>(), ys.d0, ys.d1, ys.d2, s.N, s.K, s.P,
                  s.Q, weight.const_data_ptr<scalar_t>() + 2 * wv.s2 + 2 * wv.s3, wv.s1, wv.s0,
                  -wv.s2, -wv.s3, nullptr, grad_input.mutable_data_ptr<scalar_t>(), xs.d0,
                  xs.d1, xs.d2, s.C, s.H, s.W, 2 * s.dil_h - s.pad_h, 2 * s.dil_w - s.pad_w,
                  s.dil_h},
              isa);
        });
    return grad_input;
  }
  if (use_col2im_batch(s, grad_output, weight, isa)) {
    if (grad_output.scalar_type() == at::kFloat) {
      backward_input_col2im_batch<float>(grad_output, weight, s, grad_input, isa);
    } else {
      backward_input_col2im_batch<double>(grad_output, weight, s, grad_input, isa);
    }
    return grad_input;
  }
  if (use_window_backward_input(s, grad_output, grad_input, isa)) {
    window_backward_input(grad_output, weight, s, grad_input, isa);
    return grad_input;
  }
  if (use_grouped_blocked(s, grad_output)) {
    grouped_blocked_backward_input(grad_output, weight, s, grad_input, isa);
    return grad_input;
  }
  if (!depthwise_nhwc(s, grad_output, grad_input) && use_depthwise_blocked(s, grad_output)) {
    depthwise_blocked_backward_input(grad_output, weight, s, grad_input, isa);
    return grad_input;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(),
      "conv2d_backward_input_cpu", [&] {
        if (depthwise_nhwc(s, grad_output, grad_input)) {
          depthwise_nhwc_backward_input<scalar_t>(grad_output, weight, s, grad_input);
        } else if (use_direct_grouped(s)) {
          depthwise_direct_backward_input<scalar_t>(grad_output, weight, s, grad_input, isa);
        } else {
          if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
            const Isa isa_bf16 = cpu_isa_bf16();
            if (bf16_pairs(grad_output, isa_bf16)) {
              if (backward_input_by_gather(s)) {
                backward_input_gather<scalar_t, c10::BFloat16>(
                    grad_output, weight, s, grad_input, isa_bf16);
              } else {
                backward_input_col2im<scalar_t, c10::BFloat16>(
                    grad_output, weight, s, grad_input, isa_bf16);
              }
              return;
            }
          }
          if (backward_input_by_gather(s)) {
            backward_input_gather<scalar_t>(grad_output, weight, s, grad_input, isa);
          } else {
            backward_input_col2im<scalar_t>(grad_output, weight, s, grad_input, isa);
          }
        }
      });
  return grad_input;
}

}  // namespace
}  // namespace conv_ext::cpu

TORCH_LIBRARY_IMPL(conv_ext, CPU, m) {
  m.impl("conv2d_backward_input", &conv_ext::cpu::conv2d_backward_input_cpu);
}
