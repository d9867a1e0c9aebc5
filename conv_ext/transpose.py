"""conv_ext.conv_transpose2d and ConvTranspose2dFunction: the transposed
convolution, with the argument conventions of
torch.nn.functional.conv_transpose2d, built from the convolution's own ops.

A transposed convolution is the grad-input pass of the convolution that
shares its weight (input x plays that convolution's grad_output), so

  forward      y  = conv2d_backward_input(x, w, y's size)
  grad input   gx = conv2d_forward(gy, w)
  grad weight  gw = conv2d_backward_weight(x, gy): grad_output and input swap
  grad bias    gb = conv2d_backward_bias(gy)

with the weight in nn.ConvTranspose2d's layout (C_in, C_out/groups, R, S),
which is the convolution's (K, C/groups, R, S) with K = C_in.

output_padding adds rows and columns at the bottom and right of y, carried
by the exact output size handed to conv2d_backward_input. When it reaches
the stride (allowed while it is below the dilation), the convolution over y
has output_padding // stride more output rows than x has rows. Rows of x
there would be inputs that do not exist, so they are zeros: x is zero-padded
to the convolution's size, and gx is cut back to x's.
"""
import torch
import torch.nn.functional as F

from ._autocast import cast_inputs
from ._ops import below_autograd, ops

_NAME = "conv_transpose2d"


def output_extent(size, k, stride, pad, dil, out_pad):
    """One extent of the transposed convolution's output, as torch has it."""
    return (size - 1) * stride - 2 * pad + dil * (k - 1) + out_pad + 1


def _extra(output_padding, stride):
    # Rows (columns) by which the convolution over the output outgrows x:
    # floor(((H - 1) * stride + output_padding) / stride) + 1 - H.
    return [op // s for op, s in zip(output_padding, stride)]


def _pad_like_conv(x, extra):
    """x with `extra` zero rows and columns appended (bottom, right), in x's
    memory format; x itself when there are none."""
    if not any(extra):
        return x
    fmt = torch._prims_common.suggest_memory_format(x)
    return F.pad(x, [0, extra[1], 0, extra[0]]).contiguous(memory_format=fmt)


class ConvTranspose2dFunction(torch.autograd.Function):
    """Binds conv2d_backward_input, as the transposed convolution's forward,
    to conv2d_forward, conv2d_backward_weight and conv2d_backward_bias for its
    gradients; computes only the gradients autograd asks for. Its backward is
    built from differentiable ops, so double backward works."""

    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, output_padding, dilation, groups):
        n, _, h, w = input.shape
        _, cg, r, s = weight.shape
        out_size = [n, cg * groups,
                    output_extent(h, r, stride[0], padding[0], dilation[0], output_padding[0]),
                    output_extent(w, s, stride[1], padding[1], dilation[1], output_padding[1])]
        extra = _extra(output_padding, stride)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.extra = extra
        ctx.save_for_backward(input, weight)
        out = below_autograd(
            ops.conv2d_backward_input, _pad_like_conv(input, extra), weight, out_size, stride, padding,
            dilation, groups)
        if bias is not None:
            out.add_(bias.view(1, -1, 1, 1))
        return out

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        needs = ctx.needs_input_grad
        grad_input = grad_weight = grad_bias = None
        if needs[0]:
            grad_input = below_autograd(
                ops.conv2d_forward, grad_output, weight, None, stride, padding, dilation, groups)
            if any(ctx.extra):
                grad_input = grad_input[:, :, :input.shape[2], :input.shape[3]]
        if needs[1]:
            # Padded here, not saved padded: under create_graph the pad must
            # be recorded, so that the gradient reaches input.
            grad_weight = below_autograd(
                ops.conv2d_backward_weight, _pad_like_conv(input, ctx.extra), grad_output,
                list(weight.shape), stride, padding, dilation, groups)
        if needs[2]:
            grad_bias = below_autograd(ops.conv2d_backward_bias, grad_output)
        return grad_input, grad_weight, grad_bias, None, None, None, None, None


def _pair(name, value, minimum):
    """An int or a pair of ints, checked as torch checks them: a bad value
    raises naming `name`."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{_NAME}: expected {name} to be an int or a pair of ints, got {value!r}")
    if len(values) != 2:
        raise RuntimeError(f"{_NAME}: expected {name} to have 2 values, got {value!r}")
    if any(v < minimum for v in values):
        bound = "> 0" if minimum == 1 else ">= 0"
        raise RuntimeError(f"{_NAME}: expected {name} to be {bound}, got {value!r}")
    return list(values)


def _check_tensors(input, weight, bias, groups):
    for name, t in (("input", input), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{_NAME}: expected {name} to be a Tensor, got {type(t).__name__}")
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"{_NAME}: expected bias to be a Tensor or None, got {type(bias).__name__}")
    if not isinstance(groups, int) or isinstance(groups, bool):
        raise TypeError(f"{_NAME}: expected groups to be an int, got {groups!r}")
    if groups < 1:
        raise RuntimeError(f"{_NAME}: expected groups > 0, got {groups}")
    if input.dim() not in (3, 4):
        raise RuntimeError(
            f"{_NAME}: expected 3-D (unbatched C, H, W) or 4-D (batched N, C, H, W) input, "
            f"got input of shape {tuple(input.shape)}")
    if weight.dim() != 4:
        raise RuntimeError(
            f"{_NAME}: expected 4-D weight (C_in, C_out/groups, R, S), got shape {tuple(weight.shape)}")
    if weight.shape[0] % groups:
        raise RuntimeError(
            f"{_NAME}: expected weight's input channels ({weight.shape[0]}) to be divisible by groups ({groups})")
    c = input.shape[-3]
    if c != weight.shape[0]:
        raise RuntimeError(
            f"{_NAME}: expected input with {weight.shape[0]} channels for weight of shape "
            f"{tuple(weight.shape)}, got input of shape {tuple(input.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[1] * groups,):
        raise RuntimeError(
            f"{_NAME}: expected bias of shape ({weight.shape[1] * groups},) (one value per output channel), "
            f"got {tuple(bias.shape)}")
    if input.shape[-1] == 0 or input.shape[-2] == 0:
        raise RuntimeError(
            f"{_NAME}: expected input with nonzero height and width, got input of shape {tuple(input.shape)}")


def _check_output_padding(output_padding, stride, dilation):
    # torch's rule: each output_padding below its stride or its dilation.
    if any(op >= s and op >= d for op, s, d in zip(output_padding, stride, dilation)):
        raise RuntimeError(
            f"{_NAME}: output padding must be smaller than either stride or dilation, but got "
            f"output_padding {tuple(output_padding)}, stride {tuple(stride)}, dilation {tuple(dilation)}")


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Applies a 2-D transposed convolution with conv_ext's kernels.

    Same signature, semantics, output shape, dtype and memory format as
    torch.nn.functional.conv_transpose2d: input (N, C_in, H, W) or unbatched
    (C_in, H, W); weight (C_in, C_out/groups, R, S); optional bias (C_out,);
    stride, padding, output_padding and dilation an int or a pair, each
    output_padding smaller than its stride or its dilation. The output is
    (N, C_out, H_out, W_out) with
    H_out = (H - 1) * stride - 2 * padding + dilation * (R - 1) + output_padding + 1.
    """
    _check_tensors(input, weight, bias, groups)
    stride = _pair("stride", stride, 1)
    padding = _pair("padding", padding, 0)
    output_padding = _pair("output_padding", output_padding, 0)
    dilation = _pair("dilation", dilation, 1)
    _check_output_padding(output_padding, stride, dilation)
    for axis, i in (("height", 0), ("width", 1)):
        extent = output_extent(input.shape[-2 + i], weight.shape[2 + i], stride[i], padding[i], dilation[i],
                               output_padding[i])
        if extent < 1:
            raise RuntimeError(
                f"{_NAME}: output {axis} would be {extent} for input {axis} {input.shape[-2 + i]}, "
                f"kernel {weight.shape[2 + i]}, stride {stride[i]}, padding {padding[i]}, "
                f"dilation {dilation[i]}, output_padding {output_padding[i]}; expected at least 1 "
                "(use less padding)")
    # Cast before the Function, as conv2d does: it must save the tensors its
    # ops compute with, and autograd must record the casts.
    input, weight, bias = cast_inputs(input.device.type, input, weight, bias)
    for what, a, b in (("dtype", input.dtype, weight.dtype), ("device", input.device, weight.device)):
        if a != b:
            raise RuntimeError(f"{_NAME}: expected input and weight to have the same {what}, got {a} and {b}")
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    out = ConvTranspose2dFunction.apply(input, weight, bias, stride, padding, output_padding, dilation, groups)
    return out.squeeze(0) if unbatched else out
