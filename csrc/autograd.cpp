// Autograd for every op, in C++ at the Autograd dispatch key, as torch's own
// convolution has it. A call that records nothing (grad mode off, or no input
// that requires grad) goes straight to the device kernel; one that records
// costs one C++ node. (A Python kernel at this key, torch.library's
// register_autograd, cost more than a whole 8x8 convolution on every call,
// under no_grad too: issue 14.) Being in C++, the gradients also reach
// TorchScript and torch.jit.load'ed modules.
//
// Each backward is written with the ops themselves, called through the
// dispatcher, so it is differentiable in turn (double backward), and autocast
// and tracing see its calls:
//   forward(x, w, b)        gx = backward_input(gy, w), gw = backward_weight(gy, x),
//                           gb = backward_bias(gy)
//   forward_activation      gy' = activation_backward(gy, y), then as forward
//   backward_input(gy, w)   linear in each: <backward_input(gy, w), gg> =
//                           <gy, forward(gg, w)>, so d gy = forward(gg, w),
//                           d w = backward_weight(gy, gg)
//   backward_weight(gy, x)  likewise: d gy = forward(x, gg),
//                           d x = backward_input(gy, gg)
//   backward_bias(gy)       gg broadcast over batch and pixels
//   activation_backward(g, y) = g * a'(y): linear in g; for y it needs a''
//                           written in y (relu, leaky_relu: 0; sigmoid:
//                           1 - 2y; tanh: -2y)
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <string>
#include <vector>

namespace conv_ext {
namespace {

using at::IntArrayRef;
using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ------------------------------------------------ the ops, via the dispatcher
using ForwardSig = Tensor(
    const Tensor&, const Tensor&, const std::optional<Tensor>&, IntArrayRef,
    IntArrayRef, IntArrayRef, int64_t);
using ForwardActivationSig = Tensor(
    const Tensor&, const Tensor&, const std::optional<Tensor>&, IntArrayRef,
    IntArrayRef, IntArrayRef, int64_t, c10::string_view, double);
using BackwardSig = Tensor(
    const Tensor&, const Tensor&, IntArrayRef, IntArrayRef, IntArrayRef,
    IntArrayRef, int64_t);
using BackwardBiasSig = Tensor(const Tensor&);
using ActivationBackwardSig =
    Tensor(const Tensor&, const Tensor&, c10::string_view, double);

template <typename Sig>
c10::TypedOperatorHandle<Sig> op(const char* name) {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow(name, "")
      .template typed<Sig>();
}

const c10::TypedOperatorHandle<ForwardSig>& forward_op() {
  static const auto h = op<ForwardSig>("conv_ext::conv2d_forward");
  return h;
}
const c10::TypedOperatorHandle<ForwardActivationSig>& forward_activation_op() {
  static const auto h =
      op<ForwardActivationSig>("conv_ext::conv2d_forward_activation");
  return h;
}
const c10::TypedOperatorHandle<BackwardSig>& backward_input_op() {
  static const auto h = op<BackwardSig>("conv_ext::conv2d_backward_input");
  return h;
}
const c10::TypedOperatorHandle<BackwardSig>& backward_weight_op() {
  static const auto h = op<BackwardSig>("conv_ext::conv2d_backward_weight");
  return h;
}
const c10::TypedOperatorHandle<BackwardBiasSig>& backward_bias_op() {
  static const auto h = op<BackwardBiasSig>("conv_ext::conv2d_backward_bias");
  return h;
}
const c10::TypedOperatorHandle<ActivationBackwardSig>& activation_backward_op() {
  static const auto h =
      op<ActivationBackwardSig>("conv_ext::activation_backward");
  return h;
}

// Whether autograd has anything to record for these inputs.
bool records(std::initializer_list<const Tensor*> tensors) {
  if (!at::GradMode::is_enabled()) return false;
  for (const Tensor* t : tensors) {
    if (t->defined() && t->requires_grad()) return true;
  }
  return false;
}

const Tensor& or_undefined(const std::optional<Tensor>& t) {
  static const Tensor undefined;
  return t.has_value() ? *t : undefined;
}

// ------------------------------------------ the convolution's hyper-parameters
// stride, padding, dilation and groups, saved as one int list
// [sh, sw, ph, pw, dh, dw, groups]. Saved after the kernel ran, whose checks
// guarantee two values per pair.
struct Conf {
  std::vector<int64_t> v;

  static Conf of(
      IntArrayRef stride,
      IntArrayRef padding,
      IntArrayRef dilation,
      int64_t groups) {
    return Conf{{stride[0], stride[1], padding[0], padding[1], dilation[0],
                 dilation[1], groups}};
  }
  static Conf load(AutogradContext* ctx) {
    return Conf{ctx->saved_data["conf"].toIntVector()};
  }
  void save(AutogradContext* ctx) const { ctx->saved_data["conf"] = v; }

  IntArrayRef stride() const { return IntArrayRef(v).slice(0, 2); }
  IntArrayRef padding() const { return IntArrayRef(v).slice(2, 2); }
  IntArrayRef dilation() const { return IntArrayRef(v).slice(4, 2); }
  int64_t groups() const { return v[6]; }
};

// The three gradients of a convolution, each only if autograd needs it;
// `extra` undefined entries for the non-tensor arguments that follow.
variable_list conv_grads(
    AutogradContext* ctx,
    const Tensor& gy,
    const Tensor& input,
    const Tensor& weight,
    const Conf& c,
    bool has_bias,
    size_t extra) {
  Tensor gi, gw, gb;
  if (ctx->needs_input_grad(0)) {
    gi = backward_input_op().call(
        gy, weight, input.sizes(), c.stride(), c.padding(), c.dilation(), c.groups());
  }
  if (ctx->needs_input_grad(1)) {
    gw = backward_weight_op().call(
        gy, input, weight.sizes(), c.stride(), c.padding(), c.dilation(), c.groups());
  }
  // The bias has an edge (index 2) only when it was given.
  if (has_bias && ctx->needs_input_grad(2)) {
    gb = backward_bias_op().call(gy);
  }
  variable_list grads{gi, gw, gb};
  grads.resize(3 + extra);
  return grads;
}

// --------------------------------------------------------- autograd functions
struct Forward : torch::autograd::Function<Forward> {
  static Tensor forward(
      AutogradContext* ctx, const Tensor& input, const Tensor& weight,
      const std::optional<Tensor>& bias, IntArrayRef stride,
      IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
    Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView below;
      out = forward_op().call(input, weight, bias, stride, padding, dilation, groups);
    }
    ctx->save_for_backward({input, weight});
    Conf::of(stride, padding, dilation, groups).save(ctx);
    ctx->saved_data["has_bias"] = or_undefined(bias).defined();
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return conv_grads(
        ctx, grads[0], saved[0], saved[1], Conf::load(ctx),
        ctx->saved_data["has_bias"].toBool(), 4);
  }
};

struct ForwardActivation : torch::autograd::Function<ForwardActivation> {
  static Tensor forward(
      AutogradContext* ctx, const Tensor& input, const Tensor& weight,
      const std::optional<Tensor>& bias, IntArrayRef stride,
      IntArrayRef padding, IntArrayRef dilation, int64_t groups,
      c10::string_view activation, double negative_slope) {
    Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView below;
      out = forward_activation_op().call(
          input, weight, bias, stride, padding, dilation, groups, activation,
          negative_slope);
    }
    // The activation's gradient is read off the output.
    ctx->save_for_backward({input, weight, out});
    Conf::of(stride, padding, dilation, groups).save(ctx);
    ctx->saved_data["has_bias"] = or_undefined(bias).defined();
    ctx->saved_data["activation"] = std::string(activation);
    ctx->saved_data["negative_slope"] = negative_slope;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor gy = activation_backward_op().call(
        grads[0], saved[2], ctx->saved_data["activation"].toStringRef(),
        ctx->saved_data["negative_slope"].toDouble());
    return conv_grads(
        ctx, gy, saved[0], saved[1], Conf::load(ctx),
        ctx->saved_data["has_bias"].toBool(), 6);
  }
};

struct BackwardInput : torch::autograd::Function<BackwardInput> {
  static Tensor forward(
      AutogradContext* ctx, const Tensor& grad_output, const Tensor& weight,
      IntArrayRef input_size, IntArrayRef stride, IntArrayRef padding,
      IntArrayRef dilation, int64_t groups) {
    Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView below;
      out = backward_input_op().call(
          grad_output, weight, input_size, stride, padding, dilation, groups);
    }
    ctx->save_for_backward({grad_output, weight});
    Conf::of(stride, padding, dilation, groups).save(ctx);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &gy = saved[0], &weight = saved[1], &gg = grads[0];
    const Conf c = Conf::load(ctx);
    Tensor d_gy, d_weight;
    if (ctx->needs_input_grad(0)) {
      d_gy = forward_op().call(
          gg, weight, std::nullopt, c.stride(), c.padding(), c.dilation(), c.groups());
    }
    if (ctx->needs_input_grad(1)) {
      d_weight = backward_weight_op().call(
          gy, gg, weight.sizes(), c.stride(), c.padding(), c.dilation(), c.groups());
    }
    return {d_gy, d_weight, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

struct BackwardWeight : torch::autograd::Function<BackwardWeight> {
  static Tensor forward(
      AutogradContext* ctx, const Tensor& grad_output, const Tensor& input,
      IntArrayRef weight_size, IntArrayRef stride, IntArrayRef padding,
      IntArrayRef dilation, int64_t groups) {
    Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView below;
      out = backward_weight_op().call(
          grad_output, input, weight_size, stride, padding, dilation, groups);
    }
    ctx->save_for_backward({grad_output, input});
    Conf::of(stride, padding, dilation, groups).save(ctx);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &gy = saved[0], &input = saved[1], &gg = grads[0];
    const Conf c = Conf::load(ctx);
    Tensor d_gy, d_input;
    if (ctx->needs_input_grad(0)) {
      d_gy = forward_op().call(
          input, gg, std::nullopt, c.stride(), c.padding(), c.dilation(), c.groups());
    }
    if (ctx->needs_input_grad(1)) {
      d_input = backward_input_op().call(
          gy, gg, input.sizes(), c.stride(), c.padding(), c.dilation(), c.groups());
    }
    return {d_gy, d_input, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

struct BackwardBias : torch::autograd::Function<BackwardBias> {
  static Tensor forward(AutogradContext* ctx, const Tensor& grad_output) {
    Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView below;
      out = backward_bias_op().call(grad_output);
    }
    ctx->saved_data["shape"] = grad_output.sizes().vec();
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto shape = ctx->saved_data["shape"].toIntVector();
    return {grads[0].reshape({1, -1, 1, 1}).expand(shape)};
  }
};

struct ActivationBackward : torch::autograd::Function<ActivationBackward> {
  static Tensor forward(
      AutogradContext* ctx, const Tensor& grad_output, const Tensor& output,
      c10::string_view activation, double negative_slope) {
    Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView below;
      out = activation_backward_op().call(
          grad_output, output, activation, negative_slope);
    }
    ctx->save_for_backward({grad_output, output});
    ctx->saved_data["activation"] = std::string(activation);
    ctx->saved_data["negative_slope"] = negative_slope;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &g = saved[0], &y = saved[1], &gg = grads[0];
    const std::string& act = ctx->saved_data["activation"].toStringRef();
    const double slope = ctx->saved_data["negative_slope"].toDouble();
    Tensor d_g, d_y;
    if (ctx->needs_input_grad(0)) {
      d_g = activation_backward_op().call(gg, y, act, slope);
    }
    if (ctx->needs_input_grad(1)) {
      if (act == "sigmoid") {
        d_y = gg.mul(g).mul(y.mul(-2).add(1));
      } else if (act == "tanh") {
        d_y = gg.mul(g).mul(y.mul(-2));
      } else {
        d_y = at::zeros_like(y);
      }
    }
    return {d_g, d_y, Tensor(), Tensor()};
  }
};

// ------------------------------------------------ the Autograd-key kernels
Tensor conv2d_forward_autograd(
    const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  if (!records({&input, &weight, &or_undefined(bias)})) {
    at::AutoDispatchBelowADInplaceOrView below;
    return forward_op().call(input, weight, bias, stride, padding, dilation, groups);
  }
  return Forward::apply(input, weight, bias, stride, padding, dilation, groups);
}

Tensor conv2d_forward_activation_autograd(
    const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, int64_t groups,
    c10::string_view activation, double negative_slope) {
  if (!records({&input, &weight, &or_undefined(bias)})) {
    at::AutoDispatchBelowADInplaceOrView below;
    return forward_activation_op().call(
        input, weight, bias, stride, padding, dilation, groups, activation,
        negative_slope);
  }
  return ForwardActivation::apply(
      input, weight, bias, stride, padding, dilation, groups, activation, negative_slope);
}

Tensor conv2d_backward_input_autograd(
    const Tensor& grad_output, const Tensor& weight, IntArrayRef input_size,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  if (!records({&grad_output, &weight})) {
    at::AutoDispatchBelowADInplaceOrView below;
    return backward_input_op().call(
        grad_output, weight, input_size, stride, padding, dilation, groups);
  }
  return BackwardInput::apply(
      grad_output, weight, input_size, stride, padding, dilation, groups);
}

Tensor conv2d_backward_weight_autograd(
    const Tensor& grad_output, const Tensor& input, IntArrayRef weight_size,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  if (!records({&grad_output, &input})) {
    at::AutoDispatchBelowADInplaceOrView below;
    return backward_weight_op().call(
        grad_output, input, weight_size, stride, padding, dilation, groups);
  }
  return BackwardWeight::apply(
      grad_output, input, weight_size, stride, padding, dilation, groups);
}

Tensor conv2d_backward_bias_autograd(const Tensor& grad_output) {
  if (!records({&grad_output})) {
    at::AutoDispatchBelowADInplaceOrView below;
    return backward_bias_op().call(grad_output);
  }
  return BackwardBias::apply(grad_output);
}

Tensor activation_backward_autograd(
    const Tensor& grad_output, const Tensor& output, c10::string_view activation,
    double negative_slope) {
  if (!records({&grad_output, &output})) {
    at::AutoDispatchBelowADInplaceOrView below;
    return activation_backward_op().call(grad_output, output, activation, negative_slope);
  }
  return ActivationBackward::apply(grad_output, output, activation, negative_slope);
}

}  // namespace
}  // namespace conv_ext

TORCH_LIBRARY_IMPL(conv_ext, Autograd, m) {
  m.impl("conv2d_forward", &conv_ext::conv2d_forward_autograd);
  m.impl("conv2d_forward_activation", &conv_ext::conv2d_forward_activation_autograd);
  m.impl("conv2d_backward_input", &conv_ext::conv2d_backward_input_autograd);
  m.impl("conv2d_backward_weight", &conv_ext::conv2d_backward_weight_autograd);
  m.impl("conv2d_backward_bias", &conv_ext::conv2d_backward_bias_autograd);
  m.impl("activation_backward", &conv_ext::activation_backward_autograd);
}
