"""conv_ext.conv2d and Conv2dFunction: the functional face of the ops, with
the argument conventions of torch.nn.functional.conv2d."""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._jit_internal import BroadcastingList2

from ._ops import below_autograd, conv2d_backward, ops


class Conv2dFunction(torch.autograd.Function):
    """Binds conv2d_forward (or conv2d_forward_activation, when an activation
    is fused into its epilogue) to the backward ops; computes only the
    gradients autograd asks for (ctx.needs_input_grad). Its backward is built
    from differentiable ops, so double backward works.

    conv2d and MyConv2d call the ops directly: the ops' own autograd
    (csrc/autograd.cpp) is cheaper per call and scriptable. This Function
    serves code that calls or subclasses it; under autocast its caller casts
    first (_autocast.cast_inputs), since it saves the tensors it is given."""

    # forward(ctx, ...) rather than forward + setup_context: with the latter,
    # Function.apply binds the arguments through inspect.signature on every
    # call, which costs more than a whole convolution of the seed's sizes.
    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, dilation, groups, activation=None, negative_slope=0.01):
        ctx.conf = (stride, padding, dilation, groups)
        ctx.activation, ctx.negative_slope = activation, negative_slope
        if activation is None:
            ctx.save_for_backward(input, weight)
            return below_autograd(ops.conv2d_forward, input, weight, bias, stride, padding, dilation, groups)
        output = below_autograd(
            ops.conv2d_forward_activation, input, weight, bias, stride, padding, dilation, groups, activation,
            negative_slope)
        ctx.save_for_backward(input, weight, output)  # the activation's gradient is read off the output
        return output

    @staticmethod
    def backward(ctx, grad_output):
        input, weight, *output = ctx.saved_tensors
        grads = conv2d_backward(
            grad_output, input, weight, ctx.conf, ctx.needs_input_grad, (output + [None])[0], ctx.activation,
            ctx.negative_slope)
        return *grads, *[None] * (len(ctx.needs_input_grad) - 3)


ACTIVATIONS = (None, "relu", "leaky_relu", "sigmoid", "tanh")


def check_activation(activation, negative_slope):
    """Validates the fused-activation arguments of conv2d and MyConv2d."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"expected activation to be one of {ACTIVATIONS}, got {activation!r}")
    if not isinstance(negative_slope, (int, float)) or isinstance(negative_slope, bool):
        raise TypeError(f"expected negative_slope to be a number, got {negative_slope!r}")
    if activation == "leaky_relu" and negative_slope < 0:
        raise ValueError(
            f"expected negative_slope >= 0 for a fused leaky_relu (its gradient is read off the output), got {negative_slope}")


def _pair(name, value, minimum):
    """An int or a pair of ints, as torch.nn.modules.utils._pair accepts it,
    checked: a bad value raises naming `name`."""
    # The common cases first, in a few type tests: an int, a pair of ints.
    if type(value) is int and value >= minimum:
        return (value, value)
    if type(value) is tuple and len(value) == 2:
        a, b = value
        if type(a) is int and type(b) is int and a >= minimum and b >= minimum:
            return value
    if isinstance(value, (list, tuple)):
        values = tuple(value)
    else:
        values = (value, value)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError(f"conv2d: expected {name} to be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in values):
        bound = "> 0" if minimum == 1 else ">= 0"
        raise ValueError(f"conv2d: expected {name} to be {bound}, got {value!r}")
    return values


def check_input(input):
    """The checks on `input` that the ops cannot word: the op would reject a
    non-tensor or a sparse tensor without naming it, and takes 4-D only."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"conv2d: expected input to be a Tensor, got {type(input).__name__}")
    if input.layout != torch.strided:
        raise RuntimeError(f"conv2d: expected input to be a dense (strided) tensor, got layout {input.layout}")
    if input.dim() != 4 and input.dim() != 3:
        raise RuntimeError(
            "conv2d: expected 3-D (unbatched C, H, W) or 4-D (batched N, C, H, W) "
            f"input, got input of shape {tuple(input.shape)}")


def string_padding(
    input: Tensor, padding: str, stride: BroadcastingList2[int], dilation: BroadcastingList2[int],
    kernel_size: BroadcastingList2[int],
) -> Tuple[Tensor, List[int]]:
    """padding 'valid' or 'same' as the symmetric padding the ops take, with
    `input` padded by the odd element of an even 'same' kernel: torch pads
    dil*(k-1) in total, the odd element on the bottom/right. Scriptable (no
    !r in its messages)."""
    if padding == "valid":
        return input, [0, 0]
    if padding != "same":
        raise ValueError(f"conv2d: expected padding to be 'valid', 'same', an int or a pair, got '{padding}'")
    if stride[0] != 1 or stride[1] != 1:
        raise ValueError("conv2d: padding='same' is not supported for strided convolutions")
    total_h = dilation[0] * (kernel_size[0] - 1)
    total_w = dilation[1] * (kernel_size[1] - 1)
    extra_h, extra_w = total_h % 2, total_w % 2
    if extra_h or extra_w:
        input = F.pad(input, [0, extra_w, 0, extra_h])
    return input, [total_h // 2, total_w // 2]


def run_op(
    input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: BroadcastingList2[int],
    padding: BroadcastingList2[int], dilation: BroadcastingList2[int], groups: int, activation: Optional[str],
    negative_slope: float,
) -> Tensor:
    """The op on a batched (N, C, H, W) or unbatched (C, H, W) input, once
    the arguments are checked. The op itself applies autocast and autograd,
    and checks the tensors and sizes (csrc/conv_shape.cpp). Scriptable:
    MyConv2d's TorchScript forward runs it too."""
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    if activation is None:
        out = torch.ops.conv_ext.conv2d_forward(input, weight, bias, stride, padding, dilation, groups)
    else:
        out = torch.ops.conv_ext.conv2d_forward_activation(
            input, weight, bias, stride, padding, dilation, groups, activation, negative_slope)
    if unbatched:
        out = out.squeeze(0)
    return out


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None,
           negative_slope=0.01):
    """Applies a 2-D convolution with conv_ext's kernels.

    Same signature, semantics, output shape and dtype as
    torch.nn.functional.conv2d: input (N, C, H, W) or unbatched (C, H, W);
    weight (K, C/groups, R, S); optional bias (K,); stride, padding and
    dilation an int or a pair; padding also 'valid' or 'same'.

    activation ('relu', 'leaky_relu' with negative_slope, 'sigmoid', 'tanh')
    is applied in the kernel's epilogue, and its gradient computed from the
    output in backward: the same result as the activation applied after the
    convolution, without a second pass over the output.
    """
    check_input(input)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"conv2d: expected weight to be a Tensor, got {type(weight).__name__}")
    if weight.layout != torch.strided:
        raise RuntimeError(f"conv2d: expected weight to be a dense (strided) tensor, got layout {weight.layout}")
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"conv2d: expected bias to be a Tensor or None, got {type(bias).__name__}")
        if bias.layout != torch.strided:
            raise RuntimeError(f"conv2d: expected bias to be a dense (strided) tensor, got layout {bias.layout}")
    if not isinstance(groups, int) or isinstance(groups, bool):
        raise TypeError(f"conv2d: expected groups to be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"conv2d: expected groups > 0, got {groups}")
    stride = _pair("stride", stride, 1)
    dilation = _pair("dilation", dilation, 1)
    check_activation(activation, negative_slope)
    if isinstance(padding, str):
        if padding == "same" and weight.dim() != 4:  # its kernel size is read below
            raise RuntimeError(f"conv2d: expected 4-D weight, got shape {tuple(weight.shape)}")
        input, padding = string_padding(input, padding, stride, dilation, weight.shape[2:])
    else:
        padding = _pair("padding", padding, 0)
    return run_op(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope)
