// The GPU passes as plain host functions, compiled by nvcc in the *.cu files
// and called from the op entries (conv2d_*.cpp), which are compiled by the
// host compiler and never see device code.
#pragma once

#include <ATen/core/Tensor.h>

#include "../activation.h"
#include "../conv_shape.h"
#include "heuristics.h"

namespace conv_ext::cuda {

// All launch on the current stream of the current device. weight must be
// contiguous; bias is undefined or a K-vector; outputs are allocated and
// non-empty, inputs are read through their strides.
void forward(
    const at::Tensor& input,
    const at::Tensor& weight,
    const at::Tensor& bias,
    const ConvShape& s,
    ConvAlgo algo,
    at::Tensor& output,
    const Epilogue& epilogue);

void backward_input(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    const ConvShape& s,
    ConvAlgo algo,
    at::Tensor& grad_input);

void backward_weight(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const ConvShape& s,
    ConvAlgo algo,
    at::Tensor& grad_weight);

void backward_bias(const at::Tensor& grad_output, at::Tensor& grad_bias);

// grad_input = grad_output * act'(output), elementwise; all three tensors
// dense in one memory format.
void activation_backward(
    const at::Tensor& grad_output,
    const at::Tensor& output,
    const Epilogue& epilogue,
    at::Tensor& grad_input);

}  // namespace conv_ext::cuda
