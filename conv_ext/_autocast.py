"""conv_ext under torch.autocast.

Convolution is on autocast's lower-precision list: nn.Conv2d inside
torch.autocast(device, dtype) casts input, weight and bias to `dtype` and
returns a `dtype` result. conv_ext does the same in two places:

* the ops themselves (torch.ops.conv_ext.*), through kernels at the
  AutocastCPU / AutocastCUDA dispatch keys that cast and redispatch with
  autocast excluded, so a call behaves like aten::conv2d: the casts are
  recorded by autograd and the ops' C++ autograd saves the cast tensors.
  conv_ext.conv2d and MyConv2d call the ops, so this is all they need;
* cast_inputs, for a Python autograd.Function that wraps the ops (as
  Conv2dFunction does) and must save the tensors its ops compute with: its
  caller casts first, so that the casts are recorded outside the Function.

The autocast dtype is read when the op runs (float16 or bfloat16 on CUDA),
which is why these are plain kernels rather than torch.library's
register_autocast, whose target dtype is fixed at registration.
"""
import torch

from ._ops import ops

# Passes that are convolutions (GEMMs in disguise) and follow autocast's
# lower-precision rule. conv2d_backward_bias is a plain reduction: it has no
# autocast kernel and runs in the dtype it is given, as a sum would.
_LOWER_PRECISION_OPS = (
    "conv2d_forward", "conv2d_forward_activation", "conv2d_backward_input", "conv2d_backward_weight")

_lib = torch.library.Library("conv_ext", "IMPL")  # noqa: TOR901 (kept alive by the module)


def autocast_dtype(device_type):
    """The dtype autocast casts convolutions to on `device_type`, or None
    when autocast is off there (or the device has no autocast)."""
    if not torch.amp.is_autocast_available(device_type):
        return None
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def _cast(value, device_type, dtype):
    # autocast's eligibility rule: floating tensors on the autocast device,
    # float64 excepted (autocast never lowers double precision).
    if isinstance(value, torch.Tensor):
        eligible = (
            value.is_floating_point()
            and value.device.type == device_type
            and value.dtype is not torch.float64
        )
        return value.to(dtype) if eligible else value
    return value


def cast_inputs(device_type, *tensors):
    """`tensors` as a convolution under autocast on `device_type` sees them
    (unchanged when autocast is off there). None entries pass through."""
    dtype = autocast_dtype(device_type)
    if dtype is None:
        return tensors
    return tuple(_cast(t, device_type, dtype) for t in tensors)


def _autocast_kernel(op, device_type, key):
    excluded = torch._C.DispatchKeySet(key)

    def kernel(*args):
        dtype = torch.get_autocast_dtype(device_type)
        args = [_cast(a, device_type, dtype) for a in args]
        with torch._C._ExcludeDispatchKeyGuard(excluded):
            return op(*args)

    return kernel


def _register():
    for device_type, key_name in (("cpu", "AutocastCPU"), ("cuda", "AutocastCUDA")):
        key = getattr(torch._C.DispatchKey, key_name)
        for name in _LOWER_PRECISION_OPS:
            op = getattr(ops, name).default
            _lib.impl(name, _autocast_kernel(op, device_type, key), key_name)


_register()
