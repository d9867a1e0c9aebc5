"""MyConv2d, a drop-in torch.nn.Conv2d running on conv_ext's kernels, and
replace_conv2d, which swaps it into an existing model."""
import inspect
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


# ------------------------------------------------------------------ swap back
def _torch_base(cls):
    """The torch.nn class a conv_ext module stands in for: the first torch.nn
    class in its MRO (MyConv2d -> nn.Conv2d, a transposed one ->
    nn.ConvTranspose2d)."""
    return next(c for c in cls.__mro__[1:] if c.__module__.startswith("torch.nn."))


def _activation_module(activation, negative_slope):
    return {"relu": lambda: nn.ReLU(), "leaky_relu": lambda: nn.LeakyReLU(negative_slope),
            "sigmoid": lambda: nn.Sigmoid(), "tanh": lambda: nn.Tanh()}[activation]()


def _to_torch_module(module, name, fused_activation):
    """The plain torch module computing what the conv_ext `module` computes,
    sharing its parameter tensors."""
    base = _torch_base(type(module))
    # Every constructor argument of the torch conv classes is kept as an
    # attribute of the same name (bias as the parameter itself), so reading
    # them off the base's signature covers Conv2d and ConvTranspose2d alike.
    params = inspect.signature(base.__init__).parameters
    kwargs = {p: getattr(module, p) for p in params if p not in ("self", "bias", "device", "dtype")}
    plain = base(**kwargs, bias=module.bias is not None, device="meta")
    plain.weight = module.weight
    plain.bias = module.bias
    plain.train(module.training)
    activation = getattr(module, "activation", None)
    if activation is None:
        return plain
    if fused_activation != "sequential":
        _check_restorable(module, name)
    return nn.Sequential(plain, _activation_module(activation, module.negative_slope)).train(module.training)


def _check_restorable(module, name):
    activation = getattr(module, "activation", None)
    if activation is not None:
        base = _torch_base(type(module)).__name__
        raise ValueError(
            f"restore_conv2d: {name or 'the model'} fuses activation={activation!r}, which a plain "
            f"{base} cannot compute; pass fused_activation='sequential' to restore it as "
            f"nn.Sequential({base}, activation) (its state_dict keys gain '.0')")


def restore_conv2d(model, *, fused_activation="error"):
    """Replaces, in place, every conv_ext module inside `model` (MyConv2d, and
    any other conv_ext stand-in for a torch.nn conv class) by the plain torch
    module it stands in for, sharing its parameters, and returns the model:
    the inverse of replace_conv2d, for pipelines that need stock modules. A
    bare conv_ext module passed as `model` has no parent, so its replacement
    is returned.

    A plain nn.Conv2d cannot compute a fused activation: such a layer raises
    ValueError (before anything is swapped), or with
    fused_activation='sequential' becomes nn.Sequential(conv, activation)."""
    if fused_activation not in ("error", "sequential"):
        raise ValueError(f"restore_conv2d: expected fused_activation to be 'error' or 'sequential', got {fused_activation!r}")
    if _is_conv_ext_conv(model):
        return _to_torch_module(model, "", fused_activation)
    found = list(_conv_ext_children(model, ""))
    if fused_activation == "error":
        for _, _, path, child in found:
            _check_restorable(child, path)
    for parent, name, path, child in found:
        setattr(parent, name, _to_torch_module(child, path, fused_activation))
    return model


def _is_conv_ext_conv(module):
    # By the package its class comes from, so stand-ins defined in any
    # conv_ext file are found; a user's subclass of MyConv2d is left alone,
    # as replace_conv2d leaves subclasses of nn.Conv2d alone.
    package = type(module).__module__.partition(".")[0]
    return package == __name__.partition(".")[0] and isinstance(module, nn.modules.conv._ConvNd)


def _conv_ext_children(model, prefix):
    """(parent, attribute name, dotted path, module) of every conv_ext module
    below `model`."""
    for name, child in model.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if _is_conv_ext_conv(child):
            yield model, name, path, child
        else:
            yield from _conv_ext_children(child, path)
