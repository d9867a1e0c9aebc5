// The gradient of a fused activation, from the forward's activated output:
// grad_pre = grad_output * act'(output), one pass over both tensors, whose
// result feeds all three convolution backward passes.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <type_traits>

#include "../../activation.h"
#include "epilogue.h"
#include "../../conv_shape.h"

namespace conv_ext::cpu {
namespace {

at::Tensor activation_backward_cpu(
    const at::Tensor& grad_output,
    const at::Tensor& output,
    c10::string_view activation,
    double negative_slope) {
  const Epilogue e = make_epilogue(std::string(activation), negative_slope);
  check_activation_backward(grad_output, output);
  // One memory format for the three tensors so a flat loop pairs elements.
  const auto fmt = output.suggest_memory_format();
  const at::Tensor g = grad_output.contiguous(fmt);
  const at::Tensor y = output.contiguous(fmt);
  at::Tensor grad_input = at::empty(y.sizes(), y.options().memory_format(fmt));
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, y.scalar_type(), "activation_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* gp = g.const_data_ptr<scalar_t>();
        const scalar_t* yp = y.const_data_ptr<scalar_t>();
        scalar_t* out = grad_input.mutable_data_ptr<scalar_t>();
        // (Leaky) relu on float: vector blends (activation_vec.cpp). The
        // dispatch body is compiled for every type, hence the casts, taken
        // only when scalar_t is float.
        const bool relu_like = e.act == Activation::ReLU || e.act == Activation::LeakyReLU;
        const Isa isa = cpu_isa();
        if (std::is_same_v<scalar_t, float> && relu_like && isa != Isa::kScalar) {
          const float slope = e.act == Activation::ReLU ? 0.f : float(e.negative_slope);
          const float* gf = reinterpret_cast<const float*>(gp);
          const float* yf = reinterpret_cast<const float*>(yp);
          float* of = reinterpret_cast<float*>(out);
          at::parallel_for(0, y.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
            relu_grad_vec(isa, gf + begin, yf + begin, of + begin, end - begin, slope);
          });
          return;
        }
        at::parallel_for(0, y.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) {
            out[i] = static_cast<scalar_t>(
                static_cast<acc_t>(gp[i]) *
                activation_grad(static_cast<acc_t>(yp[i]), e));
          }
        });
      });
  return grad_input;
}

}  // namespace
}  // namespace conv_ext::cpu

TORCH_LIBRARY_IMPL(conv_ext, CPU, m) {
  m.impl("activation_backward", &conv_ext::cpu::activation_backward_cpu);
}
