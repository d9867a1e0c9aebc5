"""The ops of csrc/ops.cpp seen from Python: the fake kernels that let
torch.compile and opcheck trace them. Their autograd (double backward
included) is in C++, csrc/autograd.cpp."""
import torch
from torch._prims_common import suggest_memory_format

from . import _C  # noqa: F401  (loading the library registers the ops)

ops = torch.ops.conv_ext


# ---------------------------------------------------------------- fake kernels
def _out_extent(size, k, stride, pad, dil):
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


def _memory_format(a, b):
    # The rule of csrc/conv_shape.cpp (output_memory_format), mirrored.
    cl = torch.channels_last
    if suggest_memory_format(a) == cl or suggest_memory_format(b) == cl:
        return cl
    return torch.contiguous_format


def _check_same(op, name_a, a, name_b, b):
    # What csrc/conv_shape.cpp checks before the kernels run; the fake kernel
    # also serves calls that mix a meta tensor with a real one.
    torch._check(a.dtype == b.dtype, lambda: f"{op}: expected {name_a} and {name_b} to have the same dtype, got {a.dtype} and {b.dtype}")
    torch._check(a.device == b.device, lambda: f"{op}: expected {name_a} and {name_b} to be on the same device, got {a.device} and {b.device}")


def _empty(size, like, fmt):
    return torch.empty(size, dtype=like.dtype, device=like.device, memory_format=fmt)


@torch.library.register_fake("conv_ext::conv2d_forward")
def _forward_fake(input, weight, bias, stride, padding, dilation, groups):
    torch._check(input.dim() == 4, lambda: "conv2d_forward: expected 4-D input")
    torch._check(weight.dim() == 4, lambda: "conv2d_forward: expected 4-D weight")
    _check_same("conv2d_forward", "input", input, "weight", weight)
    if bias is not None:
        _check_same("conv2d_forward", "input", input, "bias", bias)
    n, _, h, w = input.shape
    k, _, r, s = weight.shape
    p = _out_extent(h, r, stride[0], padding[0], dilation[0])
    q = _out_extent(w, s, stride[1], padding[1], dilation[1])
    return _empty((n, k, p, q), input, _memory_format(input, weight))


@torch.library.register_fake("conv_ext::conv2d_forward_activation")
def _(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope):
    return _forward_fake(input, weight, bias, stride, padding, dilation, groups)


@torch.library.register_fake("conv_ext::activation_backward")
def _(grad_output, output, activation, negative_slope):
    _check_same("activation_backward", "grad_output", grad_output, "output", output)
    torch._check(grad_output.shape == output.shape, lambda: "activation_backward: expected grad_output and output to have the same shape")
    return _empty(output.shape, output, suggest_memory_format(output))


@torch.library.register_fake("conv_ext::conv2d_backward_input")
def _(grad_output, weight, input_size, stride, padding, dilation, groups):
    _check_same("conv2d_backward_input", "grad_output", grad_output, "weight", weight)
    return _empty(input_size, grad_output, _memory_format(grad_output, weight))


@torch.library.register_fake("conv_ext::conv2d_backward_weight")
def _(grad_output, input, weight_size, stride, padding, dilation, groups):
    _check_same("conv2d_backward_weight", "grad_output", grad_output, "input", input)
    return _empty(weight_size, grad_output, _memory_format(grad_output, input))


@torch.library.register_fake("conv_ext::conv2d_backward_bias")
def _(grad_output):
    torch._check(grad_output.dim() == 4, lambda: "conv2d_backward_bias: expected 4-D grad_output")
    return grad_output.new_empty((grad_output.shape[1],))


# -------------------------------------------------------------------- autograd
# Every op's autograd is registered in C++ (csrc/autograd.cpp), at the
# Autograd dispatch key as torch's own convolution has it: a call that records
# nothing goes straight to the kernel, and TorchScript sees the gradients. The
# two helpers below serve Conv2dFunction, the Python autograd.Function kept
# for code that subclasses or calls it.
def below_autograd(op, *args):
    """op(*args), skipping the op's autograd kernel when it would record
    nothing (grad mode off, as inside autograd.Function.forward and a backward
    without create_graph). Traced calls keep the plain path."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return op(*args)
    with torch._C._AutoDispatchBelowAutograd():
        return op(*args)


def conv2d_backward(grad_output, input, weight, conf, needs, output=None, activation=None, negative_slope=0.01):
    """Gradients of conv2d_forward (or of conv2d_forward_activation, given its
    `output` and `activation`) for input, weight and bias; each computed only
    where `needs` (ctx.needs_input_grad) asks for it. The ops record their
    own graph when grad mode is on (double backward)."""
    if activation is not None:
        grad_output = below_autograd(ops.activation_backward, grad_output, output, activation, negative_slope)
    stride, padding, dilation, groups = conf
    grad_input = grad_weight = grad_bias = None
    if needs[0]:
        grad_input = below_autograd(
            ops.conv2d_backward_input, grad_output, weight, list(input.shape), stride, padding, dilation, groups)
    if needs[1]:
        grad_weight = below_autograd(
            ops.conv2d_backward_weight, grad_output, input, list(weight.shape), stride, padding, dilation, groups)
    if needs[2]:
        grad_bias = below_autograd(ops.conv2d_backward_bias, grad_output)
    return grad_input, grad_weight, grad_bias
