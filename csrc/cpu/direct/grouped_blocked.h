// Grouped convolution of NCHW data with 9 to 64 channels per group
// (RegNet's group width 16): too wide for the direct kernels' per-plane
// loops (depthwise_direct.h, <= 8 channels per group), too thin for the
// packed GEMM, whose per-(image, group) tiles of 16 pixels x 16 channels
// cost more in packing and set-up than in multiply-adds. A task takes one
// image's group, copies its source planes' touched window into a
// zero-padded [row][column][channel] buffer, and computes 16 destination
// channels of a pixel as one vector: each weight vector is loaded once per
// block of pixels, each source value broadcast (a GEMM micro-kernel whose
// B panel is the window itself, no im2col).
//
// bfloat16 and half are widened to float in the window copy and rounded
// once on the way out (channel_blocks.h): the arithmetic is float32.
//
// Threads: forward and grad input own (image, group) pairs; grad weight
// owns groups and sums the images in order: deterministic.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

#include "../../conv_shape.h"
#include "../epilogue/epilogue.h"
#include "../isa.h"
#include "direct_rows.h"

namespace conv_ext::cpu {

constexpr int64_t kGroupLanes = 16;  // destination channels per vector block

// One (image, group): ns source planes src + c*s_c, nd destination planes
// dst + c*d_c. wt: [nd blocks of 16][R*S][ns][16], zeros past nd; init:
// round_up(nd, 16) values or null. pix/tap: window offsets
// (window_offsets in depthwise_blocked.h) of g over pg. T: the data's type
// (float, c10::BFloat16, c10::Half); taps and sums are float.
template <typename T>
struct GroupTask {
  const T* src;
  int64_t s_c, s_h, s_w, H, W;
  T* dst;
  int64_t d_c, d_h, d_w;
  int64_t ns, nd;
  const float* wt;
  const float* init;
  DirectGeom g;
  PadGeom pg;
  const int64_t* pix;
  const int64_t* tap;
};

// Floats of work a task needs.
inline int64_t group_work_size(const DirectGeom& g, const PadGeom& pg, int64_t ns, int64_t nd) {
  const int64_t widest = (std::max(ns, nd) + kGroupLanes - 1) / kGroupLanes * kGroupLanes;
  return (pg.Hp * pg.Wp + g.P * g.Q) * widest;
}

// dst = init + correlation of src with wt over g (forward; grad input at
// unit stride with offset +pad, dilation -dil and the transposed kernel).
template <typename T>
void group_blocked_correlate(Isa isa, const GroupTask<T>& t, float* work);
// Grad input at stride > 1: src (P x Q grad output) scattered through the
// taps into dst (H x W), g the forward's geometry.
template <typename T>
void group_blocked_scatter(Isa isa, const GroupTask<T>& t, float* work);
// Grad weight of one image: acc[(tap*ns + c)*ndp + k] += sum over outputs
// of dy(k) * x(c) at the tap, src = x (ns channels), dy nd channels,
// ndp = round_up(nd, 16).
template <typename T>
void group_blocked_dot(Isa isa, const GroupTask<T>& t, const T* dy, int64_t dy_c,
                       int64_t dy_h, int64_t dy_w, float* acc, float* work);

void grouped_blocked_forward(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const ConvShape& s, at::Tensor& output, Isa isa, const Epilogue& epilogue);
void grouped_blocked_backward_input(
    const at::Tensor& grad_output, const at::Tensor& weight, const ConvShape& s,
    at::Tensor& grad_input, Isa isa);
void grouped_blocked_backward_weight(
    const at::Tensor& grad_output, const at::Tensor& input, const ConvShape& s,
    at::Tensor& grad_weight, Isa isa);

}  // namespace conv_ext::cpu
