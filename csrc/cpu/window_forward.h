// Forward of float32 NCHW convolutions on phase planes (phase_planes.h):
// the GEMM out[K x pixels] = W[K x taps] * patches[taps x pixels] with the
// kernel read in place (microkernel_rows.cpp) and each patch panel row a
// contiguous copy from a phase plane, instead of the strided gathers of an
// im2col (a stride-2 7 x 7 layer reads every other input element).
#pragma once

#include <ATen/core/Tensor.h>

#include "../conv_shape.h"
#include "isa.h"

namespace conv_ext::cpu {

// output = conv(input, weight) + bias (bias: K floats or null); weight
// contiguous, input rows unit-stride, output dense NCHW.
void window_forward(
    const at::Tensor& input, const at::Tensor& weight, const float* bias, const ConvShape& s,
    at::Tensor& output, Isa isa);

}  // namespace conv_ext::cpu
