// Forward on the CPU. Two paths (the choice lives in heuristic.h):
//  - direct (depthwise_direct.h): depthwise and few-channels-per-group
//    convolutions, where a GEMM would have a tiny inner dimension;
//  - packed GEMM per tile of output pixels of one image and group, in one of
//    two orientations:
//      channels-major  out[K/G x pixels] = W[K/G x taps] * patches[taps x pixels]
//      pixels-major    out[pixels x K/G] = patches[pixels x taps] * W^T[taps x K/G]
//    The weight is packed once per call; the patch panels are gathered from
//    the input as the GEMM consumes them (pack.h), so memory stays bounded by
//    one tile per thread. The bias is added when the tile is stored.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../activation.h"
#include "../conv_shape.h"
#include "gemm/conv_gemm.h"
#include "direct/depthwise_direct.h"
#include "direct/depthwise_blocked.h"
#include "direct/grouped_blocked.h"
#include "direct/depthwise_nhwc.h"
#include "epilogue/epilogue.h"
#include "float_arithmetic.h"
#include "gemm/gemm_few_pixels.h"
#include "heuristic.h"
#include "window/window_forward.h"
#include "winograd/winograd.h"

namespace conv_ext::cpu {
namespace {

// pack_t: the panels' type, bfloat16 pairs for bfloat16 on the pair
// kernels (heuristic.h, bf16_pairs), else the accumulator type.
template <typename scalar_t, typename pack_t = at::opmath_type<scalar_t>>
void forward_gemm(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    const ConvShape& s,
    at::Tensor& output,
    Isa isa,
    const Epilogue& epilogue) {
  using acc_t = at::opmath_type<scalar_t>;
  const GemmKernel<acc_t, pack_t> kernel = select_gemm<acc_t, pack_t>(isa);
  const int vec_isa = vec_level(isa);
  const int64_t MR = kernel.mr, NR = kernel.nr;
  const int64_t Cg = s.Cg(), Kg = s.Kg(), CRS = Cg * s.R * s.S;
  const int64_t CRSp = packed_depth<pack_t>(CRS);
  const int64_t PQ = s.P * s.Q;
  const bool pixels_major = cpu::pixels_major(input, Kg, s.N * s.G, PQ, CRS, MR, NR);
  const bool rsc = pixels_major && channels_contiguous(input);

  // Weight panels: rows k of each group, depth = taps in the patch order.
  const int64_t wwidth = pixels_major ? NR : MR;
  const int64_t Kpad = round_up(Kg, wwidth);
  const WeightView wv(weight);
  std::vector<int64_t> kofs(Kg), tofs(CRS);
  for (int64_t k = 0; k < Kg; ++k) kofs[k] = k * wv.s0;
  tap_offsets(Cg, s.R, s.S, wv.s1, wv.s2, wv.s3, rsc, tofs.data());

  const std::vector<acc_t> b = bias_values<acc_t, scalar_t>(bias, s.K);

  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const Strides4 xs(input);
  scalar_t* y = output.mutable_data_ptr<scalar_t>();
  const Strides4 ys(output);
  auto image = [&](int64_t n, int64_t g) {
    return Im2col<scalar_t>{
        x + n * xs.d0 + g * Cg * xs.d1, xs.d1, xs.d2, xs.d3, Cg, s.H, s.W, s.Q,
        s.stride_h, s.stride_w, -s.pad_h, -s.pad_w, s.dil_h, s.dil_w, s.R, s.S, rsc};
  };

  if (s.G == 1 && few_pixels(s.N, PQ, s.K, MR, NR, kFewPixelRowsForward)) {
    std::vector<int64_t> po(PQ), co(s.K);
    for (int64_t i = 0; i < PQ; ++i) po[i] = i / s.Q * ys.d2 + i % s.Q * ys.d3;
    for (int64_t k = 0; k < s.K; ++k) co[k] = k * ys.d1;
    gemm_few_pixels<scalar_t, acc_t>(
        vec_isa, kernel, s.N, PQ, [&](int64_t n) { return image(n, 0); },
        weight.const_data_ptr<scalar_t>(), kofs.data(), s.K, tofs.data(), CRS, b.data(),
        y, ys.d0, po.data(), co.data(), std::is_same_v<scalar_t, acc_t> ? nullptr : &epilogue);
    // The output is freshly allocated, dense in its memory format.
    if (std::is_same_v<scalar_t, acc_t>)
      activate_tile(y, int64_t(1), output.numel(), int64_t(0), int64_t(1), epilogue);
    return;
  }

  // float32, and bfloat16 and half with float32 arithmetic (their bias
  // values b are float).
  if constexpr (std::is_same_v<acc_t, float>) {
    if (use_window_forward(s, input, weight, output, isa)) {
      window_forward(input, weight, b.data(), s, output, isa);
      activate_tile(y, int64_t(1), output.numel(), int64_t(0), int64_t(1), epilogue);
      return;
    }
  }

  pack_t* const wpack = scratch<pack_t>(3, s.G * Kpad * CRSp);
  pack_table_parallel(
      weight.const_data_ptr<scalar_t>(), Kg * wv.s0, s.G, kofs.data(), Kg,
      tofs.data(), CRS, wwidth, wpack);
  const int64_t tile = pixel_tile(s.N * s.G, PQ, pixels_major ? MR : NR);
  const int64_t tiles = (PQ + tile - 1) / tile;
  const int64_t KC = kernel.kc;

  at::parallel_for(0, s.N * s.G * tiles, grain_for(tile * CRS * Kg), [&](int64_t begin, int64_t end) {
    const int64_t rows = pixels_major ? round_up(tile, MR) : round_up(Kg, MR);
    const int64_t ldc = pixels_major ? round_up(Kg, NR) : round_up(tile, NR);
    acc_t* const cbuf = scratch<acc_t>(0, rows * ldc);
    pack_t* const pbuf =
        scratch<pack_t>(1, std::max(round_up(tile, NR), round_up(tile, MR)) * KC);
    std::vector<int64_t> pofs(tile), cofs(Kg);
    for (int64_t k = 0; k < Kg; ++k) cofs[k] = k * ys.d1;
    // Low precision: the bias and activation on the float tile, which the
    // store then rounds once (false: no activation, or a float output).
    auto low_precision_epilogue = [&](acc_t* c, int64_t ld, int64_t r, int64_t cols,
                                      const acc_t* rb, const acc_t* cb) {
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        return false;
      } else {
        return bias_activation_in_place(c, ld, r, cols, rb, cb, epilogue);
      }
    };
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (s.G * tiles);
      const int64_t g = (task / tiles) % s.G;
      const int64_t pq0 = (task % tiles) * tile;
      const int64_t npix = std::min(tile, PQ - pq0);
      const Im2col<scalar_t> view = image(n, g);
      const pack_t* wg = wpack + g * Kpad * CRSp;
      for (int64_t j = 0; j < npix; ++j) {
        const int64_t p = (pq0 + j) / s.Q, q = (pq0 + j) % s.Q;
        pofs[j] = p * ys.d2 + q * ys.d3;
      }
      scalar_t* yg = y + n * ys.d0 + g * Kg * ys.d1;
      // Straight into the output when it is the accumulator's type and the
      // tile is a dense block of it (NCHW: channel rows of contiguous
      // pixels; NHWC: pixel rows of contiguous channels), the bias stored
      // first (r50_res2_1x1 forward, 1 thread: 69 -> 96 GFLOP/s).
      acc_t* direct = nullptr;
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        const bool dense = pixels_major
            ? ys.d1 == 1 && ys.d2 == s.Q * ys.d3
            : ys.d3 == 1 && ys.d2 == s.Q;
        if (dense) direct = yg + pq0 * (pixels_major ? ys.d3 : 1);
      }
      if (direct != nullptr) {
        const acc_t* bg = b.data() + g * Kg;
        const int64_t ldo = pixels_major ? ys.d3 : ys.d1;
        if (pixels_major) {
          for (int64_t j = 0; j < npix; ++j) std::copy_n(bg, Kg, direct + j * ldo);
        } else {
          for (int64_t k = 0; k < Kg; ++k) std::fill_n(direct + k * ldo, npix, bg[k]);
        }
        auto pack_im = [&](int64_t m0, int64_t len, int64_t pc, int64_t kc, int64_t w) {
          pack_patches(vec_isa, view, pq0 + m0, len, pc, kc, true, w, pbuf);
          return Panels<pack_t>{pbuf, w * packed_depth<pack_t>(kc)};
        };
        if (pixels_major) {
          auto pack_a = [&](int64_t ic, int64_t mc, int64_t pc, int64_t kc) {
            return pack_im(ic, mc, pc, kc, MR);
          };
          auto pack_b = [&](int64_t jc, int64_t, int64_t pc, int64_t) {
            return Panels<pack_t>{wg + jc * CRSp + pc * NR, NR * CRSp};
          };
          gemm_packed(kernel, npix, Kg, CRS, Blocking{rows, ldc, KC}, pack_a, pack_b,
                      direct, ldo, true);
        } else {
          auto pack_a = [&](int64_t ic, int64_t, int64_t pc, int64_t) {
            return Panels<pack_t>{wg + ic * CRSp + pc * MR, MR * CRSp};
          };
          auto pack_b = [&](int64_t jc, int64_t nc, int64_t pc, int64_t kc) {
            return pack_im(jc, nc, pc, kc, NR);
          };
          gemm_packed(kernel, Kg, npix, CRS, Blocking{std::min(rows, kWeightRows), ldc, KC},
                      pack_a, pack_b, direct, ldo, true, /*b_outer=*/true);
        }
        activate_tile(yg + pq0 * ys.d3, Kg, npix, ys.d1, ys.d3, epilogue);
        continue;
      }
      if (pixels_major) {
        auto pack_a = [&](int64_t ic, int64_t mc, int64_t pc, int64_t kc) {
          pack_patches(vec_isa, view, pq0 + ic, mc, pc, kc, true, MR, pbuf);
          return Panels<pack_t>{pbuf, MR * packed_depth<pack_t>(kc)};
        };
        auto pack_b = [&](int64_t jc, int64_t, int64_t pc, int64_t) {
          return Panels<pack_t>{wg + jc * CRSp + pc * NR, NR * CRSp};
        };
        gemm_packed(
            kernel, npix, Kg, CRS, Blocking{rows, ldc, KC}, pack_a, pack_b,
            cbuf, ldc, false);
        const acc_t* none = nullptr;
        if (low_precision_epilogue(cbuf, ldc, npix, Kg, none, b.data() + g * Kg)) {
          store_tile(cbuf, ldc, npix, Kg, pofs.data(), cofs.data(), none, none, yg);
          continue;
        }
        store_tile(
            cbuf, ldc, npix, Kg, pofs.data(), cofs.data(),
            static_cast<const acc_t*>(nullptr), b.data() + g * Kg, yg);
      } else {
        auto pack_a = [&](int64_t ic, int64_t, int64_t pc, int64_t) {
          return Panels<pack_t>{wg + ic * CRSp + pc * MR, MR * CRSp};
        };
        auto pack_b = [&](int64_t jc, int64_t nc, int64_t pc, int64_t kc) {
          pack_patches(vec_isa, view, pq0 + jc, nc, pc, kc, true, NR, pbuf);
          return Panels<pack_t>{pbuf, NR * packed_depth<pack_t>(kc)};
        };
        gemm_packed(
            kernel, Kg, npix, CRS, Blocking{std::min(rows, kWeightRows), ldc, KC}, pack_a,
            pack_b, cbuf, ldc, false, /*b_outer=*/true);
        const acc_t* none = nullptr;
        if (low_precision_epilogue(cbuf, ldc, Kg, npix, b.data() + g * Kg, none)) {
          store_tile(cbuf, ldc, Kg, npix, cofs.data(), pofs.data(), none, none, yg);
          continue;
        }
        store_tile(
            cbuf, ldc, Kg, npix, cofs.data(), pofs.data(),
            b.data() + g * Kg, static_cast<const acc_t*>(nullptr), yg);
      }
      // The output is freshly allocated, dense in its memory format, so the
      // tile's pixels are ys.d3 apart.
      activate_tile(yg + pq0 * ys.d3, Kg, npix, ys.d1, ys.d3, epilogue);
    }
  });
}

// The Winograd path (heuristic.h) when it applies: float32, and bfloat16
// and half widened to float in its tile copies.
template <typename scalar_t>
void forward_winograd_typed(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const ConvShape& s, at::Tensor& output, Isa isa, const Epilogue& epilogue) {
  const std::vector<float> b = bias_values<float, scalar_t>(bias, s.K);
  const bool has_bias = bias.has_value() && bias->defined();
  const Strides4 xs(input), ys(output);
  const WeightView wv(weight);
  winograd_correlate(
      WinogradProblem<scalar_t>{
          input.const_data_ptr<scalar_t>(), xs.d0, xs.d1, xs.d2, s.N, s.C, s.H, s.W,
          weight.const_data_ptr<scalar_t>(), wv.s0, wv.s1, wv.s2, wv.s3,
          has_bias ? b.data() : nullptr, output.mutable_data_ptr<scalar_t>(), ys.d0, ys.d1,
          ys.d2, s.K, s.P, s.Q, s.pad_h, s.pad_w, s.dil_h, &epilogue},
      isa);
}

bool forward_winograd(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    const ConvShape& s,
    at::Tensor& output,
    Isa isa,
    const Epilogue& epilogue) {
  if (!use_winograd(s, s.C, s.K, input, output, isa)) return false;
  CONV_EXT_DISPATCH_FLOAT_ARITHMETIC(input.scalar_type(), "conv2d_forward_winograd", [&] {
    forward_winograd_typed<scalar_t>(input, weight, bias, s, output, isa, epilogue);
  });
  return true;
}

at::Tensor forward_with_epilogue(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups,
    const Epilogue& epilogue) {
  const ConvShape s =
      check_forward(input, weight, bias, stride, padding, dilation, groups);
  at::Tensor output = at::empty(
      {s.N, s.K, s.P, s.Q},
      input.options().memory_format(output_memory_format(input, weight)));
  if (output.numel() == 0) {
    return output;
  }
  const Isa isa = cpu_isa();
  if (forward_winograd(input, weight, bias, s, output, isa, epilogue)) {
    return output;
  }
  if (use_grouped_blocked(s, input)) {
    grouped_blocked_forward(input, weight, bias, s, output, isa, epilogue);
    return output;
  }
  if (!depthwise_nhwc(s, input, output) && use_depthwise_blocked(s, input)) {
    depthwise_blocked_forward(input, weight, bias, s, output, isa, epilogue);
    return output;
  }
  const bool direct = use_direct_grouped(s);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "conv2d_forward_cpu", [&] {
        if (depthwise_nhwc(s, input, output)) {
          depthwise_nhwc_forward<scalar_t>(input, weight, bias, s, output);
          // Dense channels_last: N*P*Q pixel rows of K channels.
          activate_tile(
              output.mutable_data_ptr<scalar_t>(), s.N * s.P * s.Q, s.K,
              output.stride(3), int64_t(1), epilogue);
        } else if (direct) {
          depthwise_direct_forward<scalar_t>(
              input, weight, bias, s, output, isa, epilogue);
        } else {
          if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
            const Isa isa_bf16 = cpu_isa_bf16();
            if (bf16_pairs(input, isa_bf16)) {
              forward_gemm<scalar_t, c10::BFloat16>(
                  input, weight, bias, s, output, isa_bf16, epilogue);
              return;
            }
          }
          forward_gemm<scalar_t>(input, weight, bias, s, output, isa, epilogue);
        }
      });
  return output;
}

at::Tensor conv2d_forward_cpu(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  return forward_with_epilogue(
      input, weight, bias, stride, padding, dilation, groups, Epilogue{});
}

at::Tensor conv2d_forward_activation_cpu(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups,
    c10::string_view activation,
    double negative_slope) {
  return forward_with_epilogue(
      input, weight, bias, stride, padding, dilation, groups,
      make_epilogue(std::string(activation), negative_slope));
}

}  // namespace
}  // namespace conv_ext::cpu

TORCH_LIBRARY_IMPL(conv_ext, CPU, m) {
  m.impl("conv2d_forward", &conv_ext::cpu::conv2d_forward_cpu);
  m.impl(
      "conv2d_forward_activation",
      &conv_ext::cpu::conv2d_forward_activation_cpu);
}
