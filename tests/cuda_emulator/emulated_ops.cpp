// The four passes of csrc/cuda/ run on the CPU through the emulator
// (emulator.h): the same pass templates, parameters, grids, buffers and
// device code as the GPU build, only the launch policy differs. Each entry
// mirrors its op entry in csrc/cuda/conv2d_*.cpp and takes an `algo`
// (-1: the heuristic's choice; else a ConvAlgo) and, for grad weight, a
// chunk count (-1: the heuristic's), so tests reach every kernel variant.
// The heuristic's choice here is made with TF32 off (float32 exact), so that
// the float tests of the SIMT kernels keep their tolerances; the TF32 and
// 16-bit tensor-core kernels are reached by their explicit ConvAlgo.
#include <torch/extension.h>

#include "emulator.h"

#include "cuda/backward_bias.cuh"
#include "cuda/backward_input.cuh"
#include "cuda/backward_weight.cuh"
#include "cuda/forward.cuh"
#include "cuda/heuristics.h"

namespace {

using conv_ext::ConvShape;
using conv_ext::cuda::ConvAlgo;

struct EmuLaunch {
  template <class Params>
  void operator()(
      void (*kernel)(Params),
      int64_t blocks,
      int threads,
      const Params& params,
      int smem_bytes = 0) const {
    emu::launch(
        kernel, conv_ext::cuda::grid_size(blocks, "emulated launch"), threads,
        params, static_cast<size_t>(smem_bytes));
  }
};

// An sm_80+ device with TF32 off (see above).
constexpr conv_ext::cuda::MathMode kEmulatedMode{true, false};

ConvAlgo pick(int64_t algo, ConvAlgo chosen) {
  return algo < 0 ? chosen : static_cast<ConvAlgo>(algo);
}

at::Tensor forward(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    std::vector<int64_t> stride,
    std::vector<int64_t> padding,
    std::vector<int64_t> dilation,
    int64_t groups,
    int64_t algo) {
  const ConvShape s = conv_ext::check_forward(
      input, weight, bias, stride, padding, dilation, groups);
  at::Tensor output = at::empty(
      {s.N, s.K, s.P, s.Q},
      input.options().memory_format(
          conv_ext::output_memory_format(input, weight)));
  if (output.numel() == 0) {
    return output;
  }
  const at::Tensor b = bias.has_value() ? *bias : at::Tensor();
  if (input.numel() == 0) {
    if (b.defined()) {
      return output.copy_(b.reshape({1, s.K, 1, 1}).expand_as(output));
    }
    return output.zero_();
  }
  conv_ext::cuda::launch_forward(
      EmuLaunch{}, input, weight.contiguous(), b, s,
      pick(algo,
           conv_ext::cuda::choose_forward_algo(
               s, input.scalar_type(), kEmulatedMode)),
      output);
  return output;
}

// The forward with an activation in the kernels' epilogue
// (conv2d_forward_activation), on a non-empty image.
at::Tensor forward_activation(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    std::vector<int64_t> stride,
    std::vector<int64_t> padding,
    std::vector<int64_t> dilation,
    int64_t groups,
    int64_t algo,
    std::string activation,
    double negative_slope) {
  const ConvShape s = conv_ext::check_forward(
      input, weight, bias, stride, padding, dilation, groups);
  TORCH_CHECK(input.numel() > 0, "forward_activation: needs a non-empty input");
  at::Tensor output = at::empty(
      {s.N, s.K, s.P, s.Q},
      input.options().memory_format(
          conv_ext::output_memory_format(input, weight)));
  const at::Tensor b = bias.has_value() ? *bias : at::Tensor();
  conv_ext::cuda::launch_forward(
      EmuLaunch{}, input, weight.contiguous(), b, s,
      pick(algo,
           conv_ext::cuda::choose_forward_algo(
               s, input.scalar_type(), kEmulatedMode)),
      output, conv_ext::make_epilogue(activation, negative_slope));
  return output;
}

at::Tensor backward_input(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    std::vector<int64_t> input_size,
    std::vector<int64_t> stride,
    std::vector<int64_t> padding,
    std::vector<int64_t> dilation,
    int64_t groups,
    int64_t algo) {
  const ConvShape s = conv_ext::check_backward_input(
      grad_output, weight, input_size, stride, padding, dilation, groups);
  const auto options = grad_output.options().memory_format(
      conv_ext::output_memory_format(grad_output, weight));
  if (s.N * s.C * s.H * s.W == 0) {
    return at::zeros(input_size, options);
  }
  // NaN-filled so that an element the kernels fail to write shows.
  at::Tensor grad_input = at::full(input_size, NAN, options);
  conv_ext::cuda::launch_backward_input(
      EmuLaunch{}, grad_output, weight.contiguous(), s,
      pick(algo,
           conv_ext::cuda::choose_backward_input_algo(
               s, grad_output.scalar_type(), kEmulatedMode)),
      grad_input);
  return grad_input;
}

at::Tensor backward_weight(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    std::vector<int64_t> weight_size,
    std::vector<int64_t> stride,
    std::vector<int64_t> padding,
    std::vector<int64_t> dilation,
    int64_t groups,
    int64_t algo,
    int64_t chunks) {
  const ConvShape s = conv_ext::check_backward_weight(
      grad_output, input, weight_size, stride, padding, dilation, groups);
  const auto options = grad_output.options().memory_format(
      conv_ext::output_memory_format(grad_output, input));
  if (s.N == 0 || input.numel() == 0) {
    return at::zeros(weight_size, options);
  }
  at::Tensor grad_weight = at::full(weight_size, NAN, options);
  const ConvAlgo a = pick(
      algo,
      conv_ext::cuda::choose_backward_weight_algo(
          s, grad_output.scalar_type(), kEmulatedMode));
  conv_ext::cuda::launch_backward_weight(
      EmuLaunch{}, grad_output, input, s, a,
      chunks < 0 ? conv_ext::cuda::backward_weight_chunks(s, a) : chunks,
      grad_weight);
  return grad_weight;
}

at::Tensor backward_bias(const at::Tensor& grad_output) {
  conv_ext::check_backward_bias(grad_output);
  at::Tensor grad_bias = at::empty({grad_output.size(1)}, grad_output.options());
  if (grad_bias.numel() == 0) {
    return grad_bias;
  }
  if (grad_output.numel() == 0) {
    return grad_bias.zero_();
  }
  grad_bias.fill_(NAN);
  conv_ext::cuda::launch_backward_bias(EmuLaunch{}, grad_output, grad_bias);
  return grad_bias;
}

// The heuristic's choices for a problem: (forward, grad input, grad weight)
// as ConvAlgo values, and the grad-weight chunk count; allow_tf32 stands for
// torch.backends.cudnn.allow_tf32.
std::vector<int64_t> choices(
    std::vector<int64_t> input_size,
    std::vector<int64_t> weight_size,
    std::vector<int64_t> stride,
    std::vector<int64_t> padding,
    std::vector<int64_t> dilation,
    int64_t groups,
    at::ScalarType dtype,
    bool allow_tf32) {
  const conv_ext::cuda::MathMode mode{true, allow_tf32};
  const at::Tensor input = at::empty(input_size, at::TensorOptions().dtype(dtype).device(at::kMeta));
  const at::Tensor weight = at::empty(weight_size, at::TensorOptions().dtype(dtype).device(at::kMeta));
  const ConvShape s = conv_ext::check_forward(
      input, weight, std::nullopt, stride, padding, dilation, groups);
  const ConvAlgo w =
      conv_ext::cuda::choose_backward_weight_algo(s, dtype, mode);
  return {
      static_cast<int64_t>(
          conv_ext::cuda::choose_forward_algo(s, dtype, mode)),
      static_cast<int64_t>(
          conv_ext::cuda::choose_backward_input_algo(s, dtype, mode)),
      static_cast<int64_t>(w), conv_ext::cuda::backward_weight_chunks(s, w)};
}

// ldmatrix's shared-memory wavefronts since the last call: (8x8 matrices
// read, extra wavefronts from bank conflicts), then the counters reset.
std::vector<int64_t> take_ldmatrix_stats() {
  emu::SharedMemoryStats& stats = emu::shared_memory_stats();
  const std::vector<int64_t> out{
      static_cast<int64_t>(stats.ldmatrix_matrices),
      static_cast<int64_t>(stats.ldmatrix_extra_wavefronts)};
  stats = emu::SharedMemoryStats{};
  return out;
}

// Poisoned: a cp.async destination reads as NaN from issue until its wait,
// so a thread still reading a stage that another thread already refills
// shows (emulator.h, CpAsyncPending).
void set_cp_async_poisoned(bool poisoned) {
  emu::cp_async_pending() =
      poisoned ? emu::CpAsyncPending::kPoisoned : emu::CpAsyncPending::kStale;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward);
  m.def("forward_activation", &forward_activation);
  m.def("backward_input", &backward_input);
  m.def("backward_weight", &backward_weight);
  m.def("backward_bias", &backward_bias);
  m.def("choices", &choices);
  m.def("take_ldmatrix_stats", &take_ldmatrix_stats);
  m.def("set_cp_async_poisoned", &set_cp_async_poisoned);
}
