"""MyConv2d, a drop-in torch.nn.Conv2d running on conv_ext's kernels, and
replace_conv2d, which swaps it into an existing model."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functional import check_activation, check_input, run_op, string_padding


class MyConv2d(nn.Conv2d):
    """torch.nn.Conv2d with its forward computed by conv_ext's kernels.

    Constructor, defaults, parameters, initialisation, repr and state_dict are
    nn.Conv2d's own, so checkpoints load either way and isinstance(m,
    nn.Conv2d) holds.

    The keyword-only `activation` ('relu', 'leaky_relu', 'sigmoid', 'tanh';
    default None keeps it a plain Conv2d) fuses that activation into the
    kernel, `negative_slope` being leaky_relu's.

    torch.jit.script and torch.jit.trace take it, and models holding it, as
    they take nn.Conv2d; the ops' autograd is in C++, so a scripted module
    has the same gradients.
    """

    def __init__(self, *args, activation=None, negative_slope=0.01, **kwargs):
        check_activation(activation, negative_slope)
        super().__init__(*args, **kwargs)
        self.activation = activation
        # A float, as the op's schema has it (TorchScript does not convert).
        self.negative_slope = float(negative_slope)

    def extra_repr(self):
        s = super().extra_repr()
        if self.activation is not None:
            s += f", activation={self.activation!r}"
            if self.activation == "leaky_relu":
                s += f", negative_slope={self.negative_slope}"
        return s

    # Per call only what can change between calls is looked at: the input.
    # stride, dilation and groups go to the op as they are (it checks them,
    # naming each); string padding, rare, is resolved on its own path. No
    # state is cached, so attributes changed after construction still hold.
    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        if not torch.jit.is_scripting():
            check_input(input)
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return run_op(
                input, weight, bias, self.stride, 0, self.dilation, self.groups, self.activation,
                self.negative_slope)
        if isinstance(self.padding, str):
            # From kernel_size, as nn.Conv2d computes its padding for the
            # other padding modes (and so a trace holds no size arithmetic).
            input, padding = string_padding(input, self.padding, self.stride, self.dilation, self.kernel_size)
            return run_op(
                input, weight, bias, self.stride, padding, self.dilation, self.groups, self.activation,
                self.negative_slope)
        return run_op(
            input, weight, bias, self.stride, self.padding, self.dilation, self.groups, self.activation,
            self.negative_slope)

    @classmethod
    def from_conv2d(cls, conv):
        """A MyConv2d computing what `conv` computes, sharing its parameter
        tensors (an optimizer that holds them keeps working)."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"from_conv2d: expected an nn.Conv2d, got {type(conv).__name__}")
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size,
            stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
            groups=conv.groups, bias=conv.bias is not None,
            padding_mode=conv.padding_mode, device="meta",
        )
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        return new


def replace_conv2d(model):
    """Replaces, in place, every plain nn.Conv2d inside `model` by a MyConv2d
    sharing its parameters, and returns the model. A bare nn.Conv2d passed as
    `model` has no parent to be swapped in, so its replacement is returned."""
    if type(model) is nn.Conv2d:
        return MyConv2d.from_conv2d(model)
    for name, child in model.named_children():
        if type(child) is nn.Conv2d:
            setattr(model, name, MyConv2d.from_conv2d(child))
        else:
            replace_conv2d(child)
    return model
