"""MyConv2d, a drop-in torch.nn.Conv2d running on conv_ext's kernels, and
replace_conv2d, which swaps it into an existing model."""
import torch.nn.functional as F
from torch import nn

from .functional import check_activation, conv2d


class MyConv2d(nn.Conv2d):
    """torch.nn.Conv2d with its forward computed by conv_ext's kernels.

    Constructor, defaults, parameters, initialisation, repr and state_dict are
    nn.Conv2d's own, so checkpoints load either way and isinstance(m,
    nn.Conv2d) holds.

    The keyword-only `activation` ('relu', 'leaky_relu', 'sigmoid', 'tanh';
    default None keeps it a plain Conv2d) fuses that activation into the
    kernel, `negative_slope` being leaky_relu's.
    """

    def __init__(self, *args, activation=None, negative_slope=0.01, **kwargs):
        check_activation(activation, negative_slope)
        super().__init__(*args, **kwargs)
        self.activation = activation
        self.negative_slope = negative_slope

    def extra_repr(self):
        s = super().extra_repr()
        if self.activation is not None:
            s += f", activation={self.activation!r}"
            if self.activation == "leaky_relu":
                s += f", negative_slope={self.negative_slope}"
        return s

    def _conv_forward(self, input, weight, bias):
        act = dict(activation=self.activation, negative_slope=self.negative_slope)
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv2d(input, weight, bias, self.stride, 0, self.dilation, self.groups, **act)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups, **act)

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
    and every plain nn.ConvTranspose2d by a MyConvTranspose2d, each sharing
    its parameters, and returns the model. Subclasses of either are left
    alone (their forward may differ). A bare layer passed as `model` has no
    parent to be swapped in, so its replacement is returned."""
    from .modules_transpose import MyConvTranspose2d

    swaps = {nn.Conv2d: MyConv2d.from_conv2d, nn.ConvTranspose2d: MyConvTranspose2d.from_conv_transpose2d}
    if type(model) in swaps:
        return swaps[type(model)](model)
    for name, child in model.named_children():
        if type(child) in swaps:
            setattr(model, name, swaps[type(child)](child))
        else:
            replace_conv2d(child)
    return model
