// Shape math and argument checks shared by every pass on every device.
//
// Layouts in the names of the GEMM view used throughout:
//   input  N x C x H x W
//   weight K x (C/G) x R x S
//   output N x K x P x Q
// All sizes are int64_t: products such as N*K*P*Q pass 2^31 on real models.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

namespace conv_ext {

struct ConvShape {
  int64_t N, C, H, W;  // input
  int64_t K, R, S;     // output channels, kernel height and width
  int64_t P, Q;        // output height and width
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;
  int64_t dil_h, dil_w;
  int64_t G;  // groups

  int64_t Cg() const { return C / G; }  // input channels per group
  int64_t Kg() const { return K / G; }  // output channels per group
};

// Each check validates the tensors and integer lists of one op, raising a
// RuntimeError that names the op, the argument, what it got and what it
// expected. On success it returns the full shape of the convolution.
ConvShape check_forward(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups);

ConvShape check_backward_input(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    at::IntArrayRef input_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups);

ConvShape check_backward_weight(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    at::IntArrayRef weight_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups);

void check_backward_bias(const at::Tensor& grad_output);

// activation_backward: grad_output and output of one fused forward.
void check_activation_backward(
    const at::Tensor& grad_output,
    const at::Tensor& output);

// The memory format nn.Conv2d gives its result: channels_last when either
// operand is channels_last, as ATen's backends decide.
c10::MemoryFormat output_memory_format(
    const at::Tensor& a,
    const at::Tensor& b);

}  // namespace conv_ext
