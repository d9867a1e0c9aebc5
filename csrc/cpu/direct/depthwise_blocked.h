// Depthwise convolution of NCHW data in blocks of 16 channels: a task
// takes one image's 16 planes, transposes their touched window into a
// zero-padded [row][column][16 channels] buffer in L1/L2, and every tap of
// a pixel is then one multiply-add over 16 channels (one AVX-512 vector,
// two AVX2 vectors), with no edge cases and no dependence on the plane's
// width. The plane kernels (depthwise_direct.h) vectorize along an output
// row instead, which leaves planes narrower than a vector (4 x 4 to
// 14 x 14: late layers of MobileNet, EfficientNet, ShuffleNet) and strided
// columns to scalar code.
//
// bfloat16 and half are widened to float as the window is copied and
// rounded once as the results are copied out: the arithmetic is float32.
//
// Threads: forward and grad input own (image, channel block) pairs; grad
// weight owns channel blocks and sums the images in order. Every output is
// summed in one fixed order: deterministic for any thread count.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

#include "../../conv_shape.h"
#include "../epilogue/epilogue.h"
#include "../isa.h"
#include "direct_rows.h"

namespace conv_ext::cpu {

constexpr int64_t kDwBlock = 16;  // channels per block: one zmm of floats

// One task of the blocked kernels: channels [c0, c0 + nc) of one image.
// Source planes src + c * ss.d1 (rows ss.d2, columns ss.d3), H x W;
// destination planes dst + c * ds.d1, P x Q outputs (or, for the strided grad input,
// H x W inputs). wt: [r][s][16] taps, init: 16 values or null. T: the
// data's type (float, c10::BFloat16, c10::Half); taps and sums are float.
template <typename T>
struct DwTask {
  const T* src;
  int64_t s_c, s_h, s_w, H, W;
  T* dst;
  int64_t d_c, d_h, d_w;
  int64_t nc;
  const float* wt;
  const float* init;
  DirectGeom g;  // outputs P x Q over the padded window
  PadGeom pg;    // the window of the source it reads
  const int64_t* pix;  // P*Q: output pixel i's first tap in the window
  const int64_t* tap;  // R*S: tap (r, s)'s offset from it, in pixels
};

// The offsets DwTask::pix and DwTask::tap for the geometry g.
void window_offsets(const DirectGeom& g, int64_t* pix, int64_t* tap);

// dst = init + correlation of src with wt over g (forward; the grad input
// at unit stride is the same with offset +pad and dilation -dil). work is
// the task's buffer, at least dw_work_size(g) floats.
template <typename T>
void dw_blocked_correlate(Isa isa, const DwTask<T>& t, float* work);

// Grad input at stride > 1: each element of the H x W grad input planes
// (dst) gathers the P x Q grad_output pixels (src) whose taps reach it,
// g and pg the forward's geometry.
template <typename T>
void dw_blocked_strided_input(Isa isa, const DwTask<T>& t, float* work);

// Grad weight: acc[(r*S + s)*16 + c] += sum over the outputs of dy(c) *
// x(c) at the tap's source pixel, for one image; src is x, dy is grad
// output with strides dys (d1, d2, d3 used).
template <typename T>
void dw_blocked_dot(Isa isa, const DwTask<T>& t, const T* dy, int64_t dy_c, int64_t dy_h,
                    int64_t dy_w, float* acc, float* work);

// Floats of work one task needs.
inline int64_t dw_work_size(const DirectGeom& g, const PadGeom& pg) {
  return (pg.Hp * pg.Wp + g.P * g.Q) * kDwBlock;
}

void depthwise_blocked_forward(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const ConvShape& s, at::Tensor& output, Isa isa, const Epilogue& epilogue);
void depthwise_blocked_backward_input(
    const at::Tensor& grad_output, const at::Tensor& weight, const ConvShape& s,
    at::Tensor& grad_input, Isa isa);
void depthwise_blocked_backward_weight(
    const at::Tensor& grad_output, const at::Tensor& input, const ConvShape& s,
    at::Tensor& grad_weight, Isa isa);

}  // namespace conv_ext::cpu
