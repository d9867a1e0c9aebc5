#include "conv_shape.h"

#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

namespace conv_ext {
namespace {

bool is_supported_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf ||
      t == at::kBFloat16;
}

void check_tensor(
    const char* op,
    const char* name,
    const at::Tensor& t,
    int64_t dim,
    const char* layout) {
  TORCH_CHECK(t.defined(), op, ": expected ", name, " to be a tensor, got None");
  TORCH_CHECK(
      t.dim() == dim, op, ": expected ", name, " to be ", dim, "-D ", layout,
      ", got a ", t.dim(), "-D tensor of shape ", t.sizes());
  TORCH_CHECK(
      is_supported_dtype(t.scalar_type()), op, ": expected ", name,
      " to be float32, float64, float16 or bfloat16, got ", t.scalar_type());
  TORCH_CHECK(
      t.layout() == at::kStrided, op, ": expected ", name,
      " to be a dense (strided) tensor, got layout ", t.layout());
}

void check_same(
    const char* op,
    const char* name_a,
    const at::Tensor& a,
    const char* name_b,
    const at::Tensor& b) {
  TORCH_CHECK(
      a.scalar_type() == b.scalar_type(), op, ": expected ", name_a, " and ",
      name_b, " to have the same dtype, got ", a.scalar_type(), " and ",
      b.scalar_type());
  TORCH_CHECK(
      a.device() == b.device(), op, ": expected ", name_a, " and ", name_b,
      " to be on the same device, got ", a.device(), " and ", b.device());
}

void check_pair(const char* op, const char* name, at::IntArrayRef v, int64_t lo) {
  TORCH_CHECK(
      v.size() == 2, op, ": expected ", name, " to have 2 values, got ",
      v.size());
  TORCH_CHECK(
      v[0] >= lo && v[1] >= lo, op, ": expected ", name, " to be ",
      lo == 0 ? ">= 0" : "> 0", ", got ", v);
}

int64_t checked_mul(const char* op, const char* what, int64_t a, int64_t b) {
  int64_t out = 0;
  TORCH_CHECK(
      !c10::mul_overflows(a, b, &out), op, ": ", what,
      " overflows int64 (", a, " * ", b, ")");
  return out;
}

int64_t checked_numel(const char* op, const char* what, at::IntArrayRef size) {
  int64_t n = 1;
  for (int64_t s : size) {
    n = checked_mul(op, what, n, s);
  }
  return n;
}

// One output extent: floor((in + 2*pad - dil*(k-1) - 1) / stride) + 1.
int64_t output_extent(
    const char* op,
    const char* axis,
    int64_t in,
    int64_t k,
    int64_t stride,
    int64_t pad,
    int64_t dil) {
  int64_t two_pad = 0, padded = 0, span = 0;
  bool overflow = c10::mul_overflows(pad, int64_t{2}, &two_pad) ||
      c10::add_overflows(in, two_pad, &padded) ||
      c10::mul_overflows(dil, k - 1, &span);
  TORCH_CHECK(
      !overflow, op, ": padded ", axis, " or dilated kernel ", axis,
      " overflows int64 (size ", in, ", padding ", pad, ", dilation ", dil,
      ", kernel ", k, ")");
  span += 1;  // extent of the dilated kernel
  TORCH_CHECK(
      span <= padded, op, ": kernel ", axis, " (", span,
      " after dilation) can't be greater than the padded input ", axis, " (",
      padded, "); use a smaller kernel or dilation, or more padding");
  return (padded - span) / stride + 1;
}

// The checks every op shares, on plain sizes: valid hyper-parameters, channel
// and group consistency, a kernel that fits, and sizes that fit in int64.
ConvShape make_shape(
    const char* op,
    at::IntArrayRef input_size,
    at::IntArrayRef weight_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  check_pair(op, "stride", stride, 1);
  check_pair(op, "padding", padding, 0);
  check_pair(op, "dilation", dilation, 1);
  TORCH_CHECK(groups > 0, op, ": expected groups > 0, got ", groups);
  for (int64_t s : input_size) {
    TORCH_CHECK(s >= 0, op, ": expected input sizes >= 0, got ", input_size);
  }
  for (int64_t s : weight_size) {
    TORCH_CHECK(s > 0, op, ": expected weight sizes > 0, got ", weight_size);
  }
  checked_numel(op, "number of input elements", input_size);
  checked_numel(op, "number of weight elements", weight_size);

  ConvShape s{};
  s.N = input_size[0];
  s.C = input_size[1];
  s.H = input_size[2];
  s.W = input_size[3];
  s.K = weight_size[0];
  s.R = weight_size[2];
  s.S = weight_size[3];
  s.stride_h = stride[0];
  s.stride_w = stride[1];
  s.pad_h = padding[0];
  s.pad_w = padding[1];
  s.dil_h = dilation[0];
  s.dil_w = dilation[1];
  s.G = groups;

  TORCH_CHECK(
      s.C % groups == 0, op, ": expected input channels (", s.C,
      ") to be divisible by groups (", groups, ")");
  TORCH_CHECK(
      s.K % groups == 0, op, ": expected weight's output channels (", s.K,
      ") to be divisible by groups (", groups, ")");
  TORCH_CHECK(
      weight_size[1] * groups == s.C, op, ": expected weight of shape ",
      weight_size, " to have ", s.C / groups,
      " input channels per group (input channels ", s.C, " / groups ", groups,
      "), got ", weight_size[1]);

  s.P = output_extent(op, "height", s.H, s.R, s.stride_h, s.pad_h, s.dil_h);
  s.Q = output_extent(op, "width", s.W, s.S, s.stride_w, s.pad_w, s.dil_w);
  const int64_t out_numel =
      checked_numel(op, "number of output elements", {s.N, s.K, s.P, s.Q});
  // Caught here, not by the allocator, so the message names the output.
  TORCH_CHECK(
      out_numel <= (int64_t{1} << 59), op, ": output of shape ",
      at::IntArrayRef({s.N, s.K, s.P, s.Q}),
      " is too large to allocate (its size in bytes overflows int64)");
  return s;
}

void check_grad_output(const char* op, const at::Tensor& g, const ConvShape& s) {
  TORCH_CHECK(
      g.sizes() == at::IntArrayRef({s.N, s.K, s.P, s.Q}), op,
      ": expected grad_output of shape ", at::IntArrayRef({s.N, s.K, s.P, s.Q}),
      " for this convolution, got ", g.sizes());
}

void check_size_list(const char* op, const char* name, at::IntArrayRef v) {
  TORCH_CHECK(
      v.size() == 4, op, ": expected ", name, " to have 4 values, got ",
      v.size());
}

}  // namespace

ConvShape check_forward(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const char* op = "conv2d_forward";
  check_tensor(op, "input", input, 4, "(N, C, H, W)");
  check_tensor(op, "weight", weight, 4, "(K, C/groups, R, S)");
  check_same(op, "input", input, "weight", weight);
  ConvShape s = make_shape(
      op, input.sizes(), weight.sizes(), stride, padding, dilation, groups);
  if (bias.has_value() && bias->defined()) {
    check_tensor(op, "bias", *bias, 1, "(K,)");
    check_same(op, "input", input, "bias", *bias);
    TORCH_CHECK(
        bias->size(0) == s.K, op, ": expected bias of shape [", s.K,
        "] (one value per output channel), got ", bias->sizes());
  }
  return s;
}

ConvShape check_backward_input(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    at::IntArrayRef input_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const char* op = "conv2d_backward_input";
  check_tensor(op, "grad_output", grad_output, 4, "(N, K, P, Q)");
  check_tensor(op, "weight", weight, 4, "(K, C/groups, R, S)");
  check_same(op, "grad_output", grad_output, "weight", weight);
  check_size_list(op, "input_size", input_size);
  ConvShape s = make_shape(
      op, input_size, weight.sizes(), stride, padding, dilation, groups);
  check_grad_output(op, grad_output, s);
  return s;
}

ConvShape check_backward_weight(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    at::IntArrayRef weight_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const char* op = "conv2d_backward_weight";
  check_tensor(op, "grad_output", grad_output, 4, "(N, K, P, Q)");
  check_tensor(op, "input", input, 4, "(N, C, H, W)");
  check_same(op, "grad_output", grad_output, "input", input);
  check_size_list(op, "weight_size", weight_size);
  ConvShape s = make_shape(
      op, input.sizes(), weight_size, stride, padding, dilation, groups);
  check_grad_output(op, grad_output, s);
  return s;
}

void check_backward_bias(const at::Tensor& grad_output) {
  check_tensor(
      "conv2d_backward_bias", "grad_output", grad_output, 4, "(N, K, P, Q)");
}

void check_activation_backward(
    const at::Tensor& grad_output,
    const at::Tensor& output) {
  const char* op = "activation_backward";
  check_tensor(op, "grad_output", grad_output, 4, "(N, K, P, Q)");
  check_tensor(op, "output", output, 4, "(N, K, P, Q)");
  check_same(op, "grad_output", grad_output, "output", output);
  TORCH_CHECK(
      grad_output.sizes() == output.sizes(), op,
      ": expected grad_output and output to have the same shape, got ",
      grad_output.sizes(), " and ", output.sizes());
}

c10::MemoryFormat output_memory_format(
    const at::Tensor& a,
    const at::Tensor& b) {
  bool cl = a.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
      b.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  return cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

}  // namespace conv_ext
