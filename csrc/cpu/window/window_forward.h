// Forward of NCHW convolutions on phase planes (phase_planes.h),
// and the grad input of strided ones per input phase:
// the GEMM out[K x pixels] = W[K x taps] * patches[taps x pixels] with the
// kernel read in place (microkernel_rows.cpp) and each patch row a window of
// a phase plane, read in place through a pointer per tap, instead of the
// strided gathers of an im2col (a stride-2 7 x 7 layer reads every other
// input element). float32, bfloat16 and half data: the planes and the
// kernel are float (low precision widened as they are built), the results
// rounded once as they are stored.
#pragma once

#include <ATen/core/Tensor.h>

#include "../../conv_shape.h"
#include "../isa.h"
#include "../gemm/microkernel.h"

namespace conv_ext::cpu {

// c[rows x tile] = w[rows x taps] * windows, window t at wins[t] (tile
// floats); w row-major with leading dimension taps, read in place by rows,
// c with leading dimension tile and room for whole MR-row panels (rows past
// `rows` repeat the last row and are junk).
void window_gemm(
    const GemmKernel<float>& kernel, const float* w, int64_t rows, int64_t taps,
    const float* const* wins, int64_t tile, float* c);

// output = conv(input, weight) + bias (bias: K floats or null); weight
// contiguous, input rows unit-stride, output dense NCHW.
void window_forward(
    const at::Tensor& input, const at::Tensor& weight, const float* bias, const ConvShape& s,
    at::Tensor& output, Isa isa);

// grad_input (dense NCHW) of a strided layer, as one stride-1 correlation
// per phase of the input (window_backward_input.cpp).
void window_backward_input(
    const at::Tensor& grad_output, const at::Tensor& weight, const ConvShape& s,
    at::Tensor& grad_input, Isa isa);

}  // namespace conv_ext::cpu
