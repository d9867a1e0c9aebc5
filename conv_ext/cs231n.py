"""The convolution layer API of the course notes the project grew from
(CS231n's conv_forward / conv_backward), computed by conv_ext's kernels.

    x: (N, C, H, W)   w: (F, C, HH, WW)   b: (F,)
    conv_param: {'stride': int, 'pad': int}, zero padding on both sides
    out: (N, F, H', W'), H' = 1 + (H + 2*pad - HH) / stride (likewise W')

Arrays in, arrays out: numpy arrays give numpy arrays, tensors give tensors.
"""
import re
from collections.abc import Mapping

import numpy as np
import torch

from ._ops import ops


def _as_tensor(name, a):
    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a))
    if isinstance(a, torch.Tensor):
        return a
    raise TypeError(f"expected {name} to be a numpy array or a torch.Tensor, got {type(a).__name__}")


def _conv_param(conv_param):
    if not isinstance(conv_param, Mapping):
        raise TypeError(f"expected conv_param to be a dict with 'stride' and 'pad', got {type(conv_param).__name__}")
    for key in ("stride", "pad"):
        if key not in conv_param:
            raise ValueError(f"conv_param is missing {key!r}: expected a dict with 'stride' and 'pad'")
        v = conv_param[key]
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise TypeError(f"expected conv_param[{key!r}] to be an int, got {v!r}")
    stride, pad = int(conv_param["stride"]), int(conv_param["pad"])
    if stride < 1:
        raise ValueError(f"expected conv_param['stride'] >= 1, got {stride}")
    if pad < 0:
        raise ValueError(f"expected conv_param['pad'] >= 0, got {pad}")
    return stride, pad


# The ops' argument names and what this API calls them, so that an error
# raised by an op names the argument the caller passed. "input" stays when
# it describes the image (input channels, the padded input height).
_OP_NAMES = (
    (re.compile(r"\bconv2d_forward:"), "conv_forward:"),
    (re.compile(r"\bconv2d_backward_(input|weight|bias):"), "conv_backward:"),
    (re.compile(r"\bgrad_output\b"), "dout"),
    (re.compile(r"\binput\b(?! channels| height| width)"), "x"),
    (re.compile(r"\bweight\b"), "w"),
    (re.compile(r"\bbias\b"), "b"),
)


def _call(op, *args):
    """op(*args), its RuntimeError re-raised in this API's names."""
    try:
        return op(*args)
    except RuntimeError as err:
        message = str(err).splitlines()[0]
        for pattern, name in _OP_NAMES:
            message = pattern.sub(name, message)
        raise RuntimeError(message) from err


def _check_shapes(xt, wt, bt):
    if xt.dim() != 4 or wt.dim() != 4:
        raise ValueError(f"expected x (N, C, H, W) and w (F, C, HH, WW), got shapes {tuple(xt.shape)} and {tuple(wt.shape)}")
    if xt.shape[1] != wt.shape[1]:
        raise ValueError(f"expected w (F, C, HH, WW) to have C = {xt.shape[1]} channels like x, got w of shape "
                         f"{tuple(wt.shape)} for x of shape {tuple(xt.shape)}")
    if bt is not None and tuple(bt.shape) != (wt.shape[0],):
        raise ValueError(f"expected b of shape ({wt.shape[0]},), one value per filter of w, got {tuple(bt.shape)}")


def conv_forward(x, w, b, conv_param):
    """Returns (out, cache) with cache = (x, w, b, conv_param)."""
    stride, pad = _conv_param(conv_param)
    xt, wt = _as_tensor("x", x), _as_tensor("w", w)
    bt = None if b is None else _as_tensor("b", b)
    _check_shapes(xt, wt, bt)
    for axis, size, k in (("H", xt.shape[2], wt.shape[2]), ("W", xt.shape[3], wt.shape[3])):
        if (size + 2 * pad - k) % stride != 0:
            raise ValueError(
                f"{axis} + 2*pad - kernel = {size + 2 * pad - k} is not divisible by stride {stride}: "
                f"the output size 1 + ({axis} + 2*pad - kernel) / stride must be an integer")
    out = _call(ops.conv2d_forward, xt, wt, bt, [stride] * 2, [pad] * 2, [1, 1], 1)
    if isinstance(x, np.ndarray):
        out = out.numpy()
    return out, (x, w, b, conv_param)


def conv_backward(dout, cache):
    """Returns (dx, dw, db), the gradients of the loss for x, w and b (db is
    None when the forward had no bias)."""
    try:
        x, w, b, conv_param = cache
    except (TypeError, ValueError):
        raise ValueError("expected cache to be the (x, w, b, conv_param) returned by conv_forward") from None
    stride, pad = _conv_param(conv_param)
    dy, xt, wt = _as_tensor("dout", dout), _as_tensor("x", x), _as_tensor("w", w)
    _check_shapes(xt, wt, None)
    expected = (xt.shape[0], wt.shape[0], 1 + (xt.shape[2] + 2 * pad - wt.shape[2]) // stride,
                1 + (xt.shape[3] + 2 * pad - wt.shape[3]) // stride)
    if tuple(dy.shape) != expected:
        raise ValueError(f"expected dout of shape {expected}, the shape of conv_forward's out, got {tuple(dy.shape)}")
    conf = ([stride] * 2, [pad] * 2, [1, 1], 1)
    dx = _call(ops.conv2d_backward_input, dy, wt, list(xt.shape), *conf)
    dw = _call(ops.conv2d_backward_weight, dy, xt, list(wt.shape), *conf)
    db = None if b is None else _call(ops.conv2d_backward_bias, dy)
    if isinstance(dout, np.ndarray):
        dx, dw = dx.numpy(), dw.numpy()
        db = None if db is None else db.numpy()
    return dx, dw, db
