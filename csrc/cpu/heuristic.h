// The one place that picks a CPU path for a convolution. Each rule says
// what it rests on: a measurement (python -m benchmarks --device cpu, 2
// threads, float32, on a 2-core Xeon with AVX-512) or, where marked, only
// the arithmetic of the register tile.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdlib>
#include <cstring>

#include "../conv_shape.h"
#include "gemm/conv_gemm.h"
#include "gemm/gemm_few_pixels.h"
#include "isa.h"

namespace conv_ext::cpu {

// Direct kernels (depthwise_direct.h) instead of the packed GEMM when a
// group is too thin for the 6 x 16 (AVX2) or 6 x 32 (AVX-512) register
// tile: the GEMM would pad K/G <= 8 to 16-32 columns, at least half of its
// multiply-adds wasted (tile arithmetic; the boundary at 8 itself is not
// measured). The same holds without groups for a handful of channels (the
// seed shapes, 1 -> 4 and 1 -> 1 channels): direct forward 0.0125 ms on
// seed_fit against torch's 0.0166.
// Their fallback paths (half, bfloat16, strided columns) copy the window of
// the input the taps touch into zero-padded planes, so the window must stay
// near the image size (padding or strides of 2^31 make it astronomically
// large; the GEMM path never materializes it).
inline bool use_direct_grouped(const ConvShape& s) {
  const int64_t win_h = (s.P - 1) * s.stride_h + (s.R - 1) * s.dil_h + 1;
  const int64_t win_w = (s.Q - 1) * s.stride_w + (s.S - 1) * s.dil_w + 1;
  const bool bounded = win_h <= 2 * s.H + 64 && win_w <= 2 * s.W + 64;
  return s.Cg() <= 8 && s.Kg() <= 8 && bounded;
}

// The data types of the float32 specializations (Winograd, the window and
// phase-plane paths, the blocked direct kernels): float32, and bfloat16 and
// half, which they widen to float in the copies they make anyway (tiles,
// planes, windows) and round once as they store the results, so their
// arithmetic is the float32 path's. Not float64: their vectors are float.
inline bool float_arithmetic(const at::Tensor& a) {
  const at::ScalarType t = a.scalar_type();
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf;
}

// Depthwise on channels_last data (both tensors a pass reads or writes
// channels-contiguous) runs along the channels instead (depthwise_nhwc.h):
// the plane kernels would read it with a stride of C per element
// (mbv2_dw_3x3 in NHWC, 1 thread: 2.31 ms forward against torch's 0.40).
inline bool depthwise_nhwc(const ConvShape& s, const at::Tensor& a, const at::Tensor& b) {
  return s.Cg() == 1 && s.Kg() == 1 && s.C > 1 && a.stride(1) == 1 && b.stride(1) == 1;
}

// Depthwise float NCHW layers whose output rows are narrower than a
// vector (Q < 16: the 4 x 4 to 14 x 14 planes of late MobileNet,
// EfficientNet and ShuffleNet layers), strided, or with kernels wider than
// 3 x 3 run in blocks of 16 channels (depthwise_blocked.h): the plane
// kernels vectorize along a row and fall back to scalar code for narrow
// rows and strided columns, and hold only a few rows of a 5 x 5 or 7 x 7
// window in registers. Measured per pass, 2 threads, AMD EPYC with
// AVX-512, median of 60 calls interleaved with torch on a busy machine
// (forward + grad input + grad weight against torch's; plane kernels ->
// blocked): 3 x 3 (8, 960, 4, 4) 0.22x -> 1.7-4x; (8, 192, 14, 14)
// 1.0x -> 2.6x; 5 x 5 (8, 240, 14, 14) 0.85x -> 5.6x; 7 x 7
// (8, 96, 28, 28) forward, 1 thread: 4.8-5.5 ms -> 0.89 ms (torch 0.90).
// The 3 x 3 stride-1 layers on planes of 16 columns or more keep the plane
// kernels (mbv2_dw_3x3: 2.6-7x torch). The window the blocks copy must
// stay near the image size. bfloat16 and half take the blocks too,
// widened to float in the window copy (in AVX-512 registers). bfloat16, 1
// thread, AMD EPYC with AVX512_BF16, loaded machine, per pass (forward,
// grad input, grad weight; plane kernels -> blocked, torch's): (8, 960,
// 4, 4) 3.75 -> 0.20 ms (0.14), 3.74 -> 0.20 (0.17), 1.11 -> 0.22 (0.13);
// 5 x 5 stride 2 (8, 144, 28, 28) 4.7 -> 0.37 (0.43), 21 -> 0.96 (31),
// 7.8 -> 1.5 (9.4). In bfloat16 and half the 3 x 3 stride-1 layers on wide
// planes take the blocks as well: the plane kernels' fast rows are float
// only (direct_3x3_avx512.cpp) and their ring path was 2-3x slower (same
// run, three passes plane -> blocked: (32, 144, 56, 56) 24.9, 23.7, 23.2
// -> 9.5, 9.3, 9.5 ms; (8, 96, 112, 112) 13.4, 13.3, 12.1 -> 6.8, 6.8,
// 6.9; (8, 144, 56, 56) 8.0, 7.9, 3.2 -> 2.6, 2.5, 2.6; (8, 240, 28, 28)
// 1.79, 1.77, 1.35 -> 1.12, 1.12, 1.48).
inline bool use_depthwise_blocked(const ConvShape& s, const at::Tensor& a) {
  const int64_t win_h = (s.P - 1) * s.stride_h + (s.R - 1) * s.dil_h + 1;
  const int64_t win_w = (s.Q - 1) * s.stride_w + (s.S - 1) * s.dil_w + 1;
  const bool bounded = win_h <= 2 * s.H + 64 && win_w <= 2 * s.W + 64;
  return s.Cg() == 1 && s.Kg() == 1 && s.C > 1 && float_arithmetic(a) && bounded &&
      (s.Q < 16 || s.stride_h > 1 || s.stride_w > 1 || s.R * s.S > 9 ||
       a.scalar_type() != at::kFloat);
}

// Groups of 9 to 64 channels (RegNet's group width 16) in float NCHW run
// one (image, group) per task on the group's window, 16 destination
// channels per vector (grouped_blocked.h): the packed GEMM spends more on
// packing and set-up of its 16 x 16 tiles than on their multiply-adds.
// Measured as above (2 threads, AMD EPYC with AVX-512, three passes
// against torch's; GEMM -> blocked): (8, 400, 4, 4) 25 groups 0.33x ->
// 1.36x; (8, 160, 7, 7) 10 groups 0.42x -> 1.51x; (8, 160, 14, 14)
// stride 2 0.11x -> 1.41x; (8, 400, 7, 7) stride 2 0.28x -> 1.28x;
// (8, 64, 28, 28) 4 groups 0.46x -> 1.39x. The window must stay near the
// image size. bfloat16 and half as in use_depthwise_blocked (bfloat16, 1
// thread, forward + backward, GEMM -> blocked, torch's): (8, 160, 7, 7)
// 10 groups 8.2 -> 0.86 ms (0.64); (8, 400, 7, 7) stride 2 9.1 -> 1.1
// (0.82).
inline bool use_grouped_blocked(const ConvShape& s, const at::Tensor& a) {
  const int64_t win_h = (s.P - 1) * s.stride_h + (s.R - 1) * s.dil_h + 1;
  const int64_t win_w = (s.Q - 1) * s.stride_w + (s.S - 1) * s.dil_w + 1;
  const bool bounded = win_h <= 2 * s.H + 64 && win_w <= 2 * s.W + 64;
  return s.G > 1 && (s.Cg() > 8 || s.Kg() > 8) && s.Cg() <= 64 && s.Kg() <= 64 &&
      float_arithmetic(a) && bounded;
}

// bfloat16 GEMMs pack bfloat16 pairs and run the pair micro-kernel
// (microkernel_bf16.cpp) on CPUs with AVX-512 BF16: vdpbf16ps does 32
// multiply-adds per instruction where the float FMA does 16, and the packed
// panels are half the bytes. On kScalar the pair kernel's scalar reference
// runs (every kernel is scalar there, and it keeps the pair layout tested
// on every machine). AVX2 and AVX-512F widen to float while packing and run
// the float FMA kernels. Measured, 1 thread, AMD EPYC (Zen 4), min of
// interleaved runs, pairs against widening: r50_res2_3x3 (batch 2) forward
// 3.6 vs 5.5 ms, grad input 3.7 vs 5.4, grad weight 3.7 vs 6.7;
// r50_res5_3x3 forward 3.9 vs 6.3; r50_res2_1x1 grad weight 1.8 vs 3.2.
inline bool bf16_pairs(const at::Tensor& t, Isa isa_bf16) {
  return t.scalar_type() == at::kBFloat16 &&
      (isa_bf16 == Isa::kAvx512Bf16 || isa_bf16 == Isa::kScalar);
}

// bfloat16 where the pair micro-kernel runs (AVX-512 BF16) keeps to the
// packed GEMM instead of the paths that compute in float after widening
// (Winograd, the strided phase-plane forward, the window-dot grad weight):
// at twice the float FMA's multiply-adds per instruction the pair GEMM
// outruns Winograd's 2.25x fewer float products on all but the largest
// planes. Measured, 2 threads, idle AMD EPYC (Zen 4), python -m benchmarks
// --dtype bfloat16, default rules against CONV_EXT_CPU_GEMM_ONLY=1 (ms):
// r50_res4_3x3 forward 3.23 -> 1.72, grad input 3.42 -> 1.75, grad weight
// 2.62 -> 1.86; r50_res3_3x3 1.74 -> 1.60, 1.74 -> 1.61, 2.97 -> 1.69;
// dilated_3x3 4.80 -> 4.02, 4.84 -> 4.28, 5.16 -> 4.81; r50_conv1 forward
// 3.40 -> 2.12. Winograd still led on 56 x 56 and larger planes
// (r50_res2_3x3 forward 1.62 against 1.75, vgg_3x3 19.9 against 21.2): 7 %,
// not worth a rule of its own. The window-dot grad weight of a stem (taps
// per output C*R*S <= 256) stays: r50_conv1 2.95 against the GEMM's 3.69.
inline bool pairs_over_float_paths(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 && cpu_isa_bf16() == Isa::kAvx512Bf16;
}

// GEMM orientation of the forward and grad-input passes. Pixels-major
// (patch panels of mr pixels, weights as the nr-wide B panels) when channels
// are contiguous, so a patch row is runs of channels; channels-major (nr
// pixels along a row per B panel) for NCHW, where pixel runs are contiguous,
// unless padding the tile's pixels to nr wastes more than padding them to
// mr plus the channels to nr (late layers: 7 x 7 = 49 pixels per image pad
// to 64 at nr = 32 but to 54 at mr = 6, 16 % fewer multiply-adds; tile
// arithmetic, not measured against the other orientation). On NCHW data a
// pixels-major tile is transposed twice, as its patches are packed and as
// its results are stored, so the multiply-adds saved (per depth unit
// `depth`: taps per output) must outweigh 16 per output element: 1 x 1
// layers on few channels stay channels-major (2 threads, AMD EPYC Zen 3,
// AVX2, (8, 32, 56, 56) -> 32 forward, min of 30 calls interleaved with
// torch: 32 channels pad to 36 at mr = 6, and pixels-major ran at
// 0.45-0.70x torch, channels-major at 0.92x; its grad input 0.66x -> 1.08x).
inline bool pixels_major(
    const at::Tensor& src, int64_t channels, int64_t images, int64_t pixels,
    int64_t depth, int64_t mr, int64_t nr) {
  if (channels_contiguous(src)) return true;
  const int64_t t_cm = pixel_tile(images, pixels, nr);
  const int64_t t_pm = pixel_tile(images, pixels, mr);
  auto padded = [&](int64_t tile, int64_t mult) {
    const int64_t full = pixels / tile, rest = pixels % tile;
    return full * round_up(tile, mult) + round_up(rest, mult);
  };
  const double cm = double(padded(t_cm, nr)) * round_up(channels, mr);
  const double pm = double(padded(t_pm, mr)) * round_up(channels, nr);
  const double transposes = 16.0 * double(pixels) * double(channels);
  return pm < 0.9 * cm && (cm - pm) * double(depth) > transposes;
}

}  // namespace conv_ext::cpu

namespace conv_ext::cpu {

// Grad input as a gather (a forward correlation of grad_output with the
// flipped kernel, no scatter, any thread owns its input pixels) needs unit
// stride: at stride > 1 most gathered taps would be zeros the stride skips.
// There the col2im path computes the patch gradients (W^T * grad_output, no
// wasted products) and adds them into the image, one image per task.
inline bool backward_input_by_gather(const ConvShape& s) {
  return s.stride_h == 1 && s.stride_w == 1;
}

}  // namespace conv_ext::cpu

namespace conv_ext::cpu {

// CONV_EXT_CPU_GEMM_ONLY=1 sends the dense layers of every pass through the
// packed GEMM, turning off the two float32 specializations below (to
// compare them against it, as the tests do).
inline bool gemm_only() {
  const char* env = std::getenv("CONV_EXT_CPU_GEMM_ONLY");
  return env != nullptr && std::strcmp(env, "1") == 0;
}

// The phase-plane paths split a stride-st dimension into st phases; a
// stride past the kernel's extent leaves phases no tap reaches (and a
// stride of 2^31 would ask for 2^31 of them).
inline bool strides_within_kernel(const ConvShape& s) {
  return s.stride_h <= (s.R - 1) * s.dil_h + 1 && s.stride_w <= (s.S - 1) * s.dil_w + 1;
}

// Winograd F(2 x 2, 3 x 3) (winograd.h) for float32 correlations of a
// cin-channel source into cout channels with a 3 x 3 stride-1 kernel and no
// groups, undilated or with a dilation d that divides the sizes and
// paddings (d^2 undilated problems on the phase sub-grids). The grad
// weight takes it (cin = C, cout = K, dst = grad_output) where the window
// dot products do not (1 thread: r50_res4_3x3 4.1 -> 3.5 ms, dilated_3x3
// 10.0 -> 8.0 ms; r50_res2_3x3 5.9 either way, the windows kept there): the forward (cin = C, cout = K) and the grad input
// (cin = K, cout = C). It needs the vector transforms (AVX2 or AVX-512),
// rows with unit column stride on both sides (NCHW), and enough channels
// on both sides for the transforms to be small next to the 16 GEMMs
// (16 is the width of an AVX-512 register, not a measured boundary).
// It also needs enough 2 x 2 tiles: per channel pair it saves 20
// multiply-adds a tile but writes and reads 16 transformed kernel values
// (r50_res5_3x3 at batch 2, 32 tiles: 4.6 ms against the GEMM's 3.3; 64
// tiles is where the saving passes the traffic by 2x on paper).
// bfloat16 and half take it too, widened to float in the tile copies
// (winograd_transforms.h): the packed GEMM widens them in its packing as
// well and multiplies 2.25x more. bfloat16, 1 thread, AMD EPYC with
// AVX512_BF16, loaded machine (python -m benchmarks --dtype bfloat16
// --threads 1; GEMM -> Winograd, torch in the same run): r50_res4_3x3
// forward 5.73 -> 3.48 ms (torch 2.15), grad input 9.76 -> 3.51 (2.17),
// grad weight 10.2 -> 3.63 (2.47); dilated_3x3 12.5 -> 6.7, 16.2 -> 6.8,
// 20.1 -> 8.2 (torch 5.4, 5.4, 6.7). Where the bfloat16 pair GEMM runs,
// it wins instead (pairs_over_float_paths).
inline bool use_winograd(
    const ConvShape& s, int64_t cin, int64_t cout, const at::Tensor& src,
    const at::Tensor& dst, Isa isa) {
  const int64_t tiles = s.N * ((dst.size(2) + 1) / 2) * ((dst.size(3) + 1) / 2);
  const int64_t d = s.dil_h;
  const bool phases = s.dil_w == d && s.pad_h % d == 0 && s.pad_w % d == 0 &&
      s.H % d == 0 && s.W % d == 0 && s.P % d == 0 && s.Q % d == 0;
  return tiles >= 64 && !gemm_only() && isa != Isa::kScalar && float_arithmetic(src) &&
      !pairs_over_float_paths(src) &&
      s.G == 1 && s.R == 3 && s.S == 3 && s.stride_h == 1 && s.stride_w == 1 && phases &&
      cin >= 16 && cout >= 16 && src.stride(3) == 1 && dst.stride(3) == 1;
}

// Grad weight by window dot products (window_dot.h) for float32 layers
// (and bfloat16 / half, widened as the planes are built: r50_res2_3x3,
// bfloat16, 1 thread, 14.0 -> 5.1 ms against the GEMM, torch 2.5)
// without groups that the direct kernels do not take: NCHW rows on both
// operands, a dense (k, c, r, s) result, and padded phase planes near the
// image size (they are materialized, unlike the GEMM's patches). Each
// result is one dot product over all padded pixels of the batch, whose
// lanes are reduced per 4096-float segment: below ~2048 pixels the
// reductions cost as much as the products (measured, 2 threads:
// r50_res4_3x3, 512 padded pixels, 0.47x torch against the GEMM's 0.72x;
// r50_res2_3x3, 6728, 1.1x against 0.52x).
// Not for 1 x 1 kernels at the AVX2 level: its 3 x 4 tile streams the runs
// from L3 where the GEMM's blocks stay in cache, and a 1 x 1 layer's
// patches need no im2col the windows would save. 2 threads, AMD EPYC Zen 3,
// min of 30 calls, windows -> GEMM: (8, 128, 28, 28) -> 128 9.3-11.4 ->
// 3.7-4.3 ms (torch 6.4-7.7); (8, 576, 14, 14) -> 96 4.1 -> 2.4 (2.3-3.0);
// r50_res2_1x1 4.5 either way; (8, 32, 56, 56) -> 16 1.0 -> 1.2, a thin
// layer of little time, not a rule of its own.
inline bool use_window_weight_grad(
    const ConvShape& s, const at::Tensor& grad_output, const at::Tensor& input,
    const at::Tensor& grad_weight, Isa isa) {
  // Upper bounds of the phase planes' extent (window_weight_grad.cpp).
  const int64_t Hp = s.P + ((s.R - 1) * s.dil_h + s.pad_h) / s.stride_h + 2;
  const int64_t Wp = s.Q + ((s.S - 1) * s.dil_w + s.pad_w) / s.stride_w + 2;
  return s.N * Hp * Wp >= 2048 && strides_within_kernel(s) && !gemm_only() &&
      isa != Isa::kScalar && !(isa == Isa::kAvx2 && s.R * s.S == 1) &&
      float_arithmetic(input) && !(pairs_over_float_paths(input) && s.C * s.R * s.S > 256) &&
      s.G == 1 && !use_direct_grouped(s) &&
      input.stride(3) == 1 && grad_output.stride(3) == 1 && grad_weight.is_contiguous() &&
      Hp * s.stride_h <= 2 * s.H + 64 && Wp * s.stride_w <= 2 * s.W + 64;
}

// Forward on phase planes (window_forward.h) for strided float32 NCHW
// layers without groups: the patch panels are then contiguous copies,
// where the im2col gathers every stride-th element (r50_conv1, 7 x 7
// stride 2, 1 thread: 6.7 -> 5.8 ms). Not at stride 1: the dilated 3 x 3
// layer (256 channels) ran 8% slower than the GEMM, whose packed kernel
// panel is one stream where the in-place rows are six. The phase planes
// are materialized: their frame must stay near the image size.
// Not for 3 x 3 kernels on 16 to 127 channels: there the GEMM is as fast
// or faster (1 thread, AMD EPYC with AVX-512, GFLOP per CPU-second, phase
// planes -> GEMM, torch alongside: (8, 64, 28, 28) -> 128 s2 48 -> 72
// (torch 105); (8, 128, 14, 14) -> 256 76 -> 74 (110), kept; the 3-channel
// stem (8, 3, 112, 112) -> 32 35 -> 34 (78), kept).
// bfloat16 and half widened as the planes are built, only for taps per
// output C*R*S <= 256 (a stem): 1 thread, loaded machine, planes against
// the GEMM, (8, 3, 112, 112) 7 x 7 stride 2: 6.8 against 8.6 ms; 3 x 3
// stride 2 on (8, 64, 56, 56) -> 128: 13.2 against 12.2, on (8, 128, 28,
// 28) -> 256: 18.7 against 11.1.
inline bool use_window_forward(
    const ConvShape& s, const at::Tensor& input, const at::Tensor& weight,
    const at::Tensor& output, Isa isa) {
  const int64_t Hp = s.P + ((s.R - 1) * s.dil_h + s.pad_h) / s.stride_h + 2;
  const int64_t Wp = s.Q + ((s.S - 1) * s.dil_w + s.pad_w) / s.stride_w + 2;
  const bool gemm_faster = s.R * s.S <= 9 && s.C >= 16 && s.C < 128;
  const bool dtype = input.scalar_type() == at::kFloat ||
      (float_arithmetic(input) && s.C * s.R * s.S <= 256 && !pairs_over_float_paths(input));
  return !gemm_only() && isa != Isa::kScalar && dtype &&
      s.G == 1 && s.R * s.S > 1 && !gemm_faster && (s.stride_h > 1 || s.stride_w > 1) &&
      strides_within_kernel(s) &&
      !use_direct_grouped(s) && input.stride(3) == 1 &&
      weight.is_contiguous() && output.is_contiguous() && Hp * s.stride_h <= 2 * s.H + 64 &&
      Wp * s.stride_w <= 2 * s.W + 64;
}

// Grad input of strided float32 layers without groups, one stride-1
// correlation per input phase (window_backward_input.cpp), instead of the
// col2im path, which multiplies every tap at every pixel and scatters the
// products (r50_conv1: 67 GFLOP/s). Dense NCHW grad_input, and a
// grad_output frame near its size. bfloat16 and half, widened as the
// planes are built, only for taps per input pixel K*R*S <= 576: 1 thread,
// loaded machine, phases against col2im (which runs faster in bfloat16
// than in float32 here), 3 x 3 stride 2: (8, 64, 56, 56) -> 128 15.0
// against 17.1 ms, (8, 128, 28, 28) -> 256 20.4 against 13.9, (8, 256,
// 14, 14) -> 512 18.6 against 14.1; 7 x 7 stride 2 (8, 3, 112, 112) -> 64
// 12.6 against 13.1.
// AVX-512 only: with the 16-wide AVX2 tile the in-place windows stall the
// micro-kernel on loads (a stem's 64 x 12 taps per phase are as many
// streams), and col2im, whose patch panels are packed, wins. 2 threads, AMD
// EPYC (Zen 3, AVX2), float32, phases against col2im: r50_conv1 (batch 2)
// 54 against 13.9 ms (torch 19); (8, 3, 112, 112) 7 x 7 s2 -> 64 30.4
// against 11.5; 3 x 3 s2 (8, 3, 112, 112) -> 32 3.0 against 2.7; (8, 8,
// 56, 56) -> 64 3.2 against 1.7.
inline bool use_window_backward_input(
    const ConvShape& s, const at::Tensor& grad_output, const at::Tensor& grad_input,
    Isa isa) {
  const int64_t Hg = s.P + ((s.R - 1) * s.dil_h + s.pad_h) / s.stride_h + 2;
  const int64_t Wg = s.Q + ((s.S - 1) * s.dil_w + s.pad_w) / s.stride_w + 2;
  const bool dtype = grad_output.scalar_type() == at::kFloat ||
      (float_arithmetic(grad_output) && s.K * s.R * s.S <= 576);
  return !gemm_only() && isa == Isa::kAvx512 && dtype &&
      s.G == 1 && (s.stride_h > 1 || s.stride_w > 1) && strides_within_kernel(s) &&
      !use_direct_grouped(s) &&
      grad_input.is_contiguous() && Hg <= 2 * s.P + 64 && Wg <= 2 * s.Q + 64;
}

}  // namespace conv_ext::cpu

namespace conv_ext::cpu {

// A 1 x 1, stride-1, unpadded layer's grad input is the forward's product
// with the kernel transposed: dx[C x pixels] = W^T[C x K] * dy[K x pixels].
// With few pixels it runs as the few-pixel forward does (gemm_few_pixels_rows):
// W^T copied once so that each input channel's K weights are one run read in
// place, grad_output's images read in place, all images' pixels as columns,
// up to the forward's 512 rows. The gather packed W^T per depth block and
// col2im added a copy of the result; the rows kernel needs neither.
// 2 threads, AMD EPYC Zen 3 (AVX2), min of 20 calls interleaved with torch,
// before -> after: (8, 960, 4, 4) -> 160 0.74x -> 1.01x torch, (8, 96, 7, 7)
// -> 576 0.64x -> 0.99x, (8, 64, 7, 7) -> 384 0.89x -> 1.14x, (8, 116, 7, 7)
// -> 116 1.15x -> 1.47x. Two NR panels of input channels per thread at
// least: squeeze-excite's 48 channels (one pixel, 1152 deep) stay on col2im
// (0.05 ms, the rows path 0.09).
inline bool pointwise_grad_input_by_rows(
    const ConvShape& s, const at::Tensor& grad_output, Isa isa) {
  const auto t = grad_output.scalar_type();
  if (t != at::kFloat && t != at::kDouble) return false;
  const int64_t MR = select_microkernel<float>(isa).mr;
  const int64_t NR = t == at::kFloat ? select_microkernel<float>(isa).nr
                                     : select_microkernel<double>(isa).nr;
  return !gemm_only() && s.G == 1 && s.R == 1 && s.S == 1 && s.stride_h == 1 &&
      s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0 &&
      s.C >= 2 * NR * at::get_num_threads() &&
      few_pixels(s.N, s.H * s.W, s.C, MR, NR, kFewPixelRowsForward);
}

// Grad input as patch gradients over the whole batch, col2im-added
// (col2im_batch.h): float and double (the others accumulate in float apart
// from their storage), no groups, the kernel's taps contiguous per output
// channel, at least one panel of taps. Taken
//  - at stride > 1, where the gather would multiply the zeros between
//    strided pixels, with channels enough for the threads' split by input
//    channel (16, a fixed number so that the path and its bits do not
//    depend on the thread count: r50_conv1's 3 channels, split 2 + 1,
//    keep the phase planes);
//  - at stride 1 for few pixels in the batch (late layers at small batch),
//    where the gather's tiles of one image are too small.
// Measured per call, 1 thread, AMD EPYC with AVX-512, CPU time of each
// call interleaved with torch's (a busy machine), GFLOP per CPU-second
// before -> after: dense3_s2_c256_k512_7x7 (phase planes) 24 -> 79 (torch
// 83); (8, 128, 14, 14) -> 256 3 x 3 s2 (phase planes) 50 -> 72 (torch
// 97); (8, 64, 28, 28) -> 128 3 x 3 s2 42 -> 67 (torch 87); r50_down_s2
// (1 x 1 s2, col2im per image) 48 -> 68 (torch 30); dense3_s1_c512_k512_4x4
// (gather) 62 -> 81 (torch 100); se_c48_k1152_1x1 (gather) 7 -> 24 (torch 19).
// CONV_EXT_CPU_GEMM_ONLY=1 turns it off, for the tests to compare it with
// the gather (stride 1) and col2im-per-image paths.
inline bool use_col2im_batch(
    const ConvShape& s, const at::Tensor& grad_output, const at::Tensor& weight, Isa isa) {
  const int64_t NR = select_microkernel<float>(isa).nr;
  const auto t = grad_output.scalar_type();
  const bool strided = s.stride_h > 1 || s.stride_w > 1;
  const bool few = s.N * s.P * s.Q <= kFewPixelRows;
  return !gemm_only() && !pointwise_grad_input_by_rows(s, grad_output, isa) && s.G == 1 &&
      (t == at::kFloat || t == at::kDouble) &&
      ((strided && s.C >= 16) || few) && s.C * s.R * s.S >= NR &&
      weight.stride(3) == 1 && weight.stride(2) == s.S && weight.stride(1) == s.R * s.S;
}

}  // namespace conv_ext::cpu
