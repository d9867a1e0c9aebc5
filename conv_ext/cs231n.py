"""The convolution layer API of the course notes the project grew from
(CS231n's conv_forward / conv_backward), computed by conv_ext's kernels.

    x: (N, C, H, W)   w: (F, C, HH, WW)   b: (F,)
    conv_param: {'stride': int, 'pad': int}, zero padding on both sides
    out: (N, F, H', W'), H' = 1 + (H + 2*pad - HH) / stride (likewise W')

Arrays in, arrays out: numpy arrays give numpy arrays, tensors give tensors.
"""
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


def conv_forward(x, w, b, conv_param):
    """Returns (out, cache) with cache = (x, w, b, conv_param)."""
    stride, pad = _conv_param(conv_param)
    xt, wt = _as_tensor("x", x), _as_tensor("w", w)
    bt = None if b is None else _as_tensor("b", b)
    if xt.dim() != 4 or wt.dim() != 4:
        raise ValueError(f"expected x (N, C, H, W) and w (F, C, HH, WW), got shapes {tuple(xt.shape)} and {tuple(wt.shape)}")
    for axis, size, k in (("H", xt.shape[2], wt.shape[2]), ("W", xt.shape[3], wt.shape[3])):
        if (size + 2 * pad - k) % stride != 0:
            raise ValueError(
                f"{axis} + 2*pad - kernel = {size + 2 * pad - k} is not divisible by stride {stride}: "
                f"the output size 1 + ({axis} + 2*pad - kernel) / stride must be an integer")
    out = ops.conv2d_forward(xt, wt, bt, [stride] * 2, [pad] * 2, [1, 1], 1)
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
    conf = ([stride] * 2, [pad] * 2, [1, 1], 1)
    dx = ops.conv2d_backward_input(dy, wt, list(xt.shape), *conf)
    dw = ops.conv2d_backward_weight(dy, xt, list(wt.shape), *conf)
    db = None if b is None else ops.conv2d_backward_bias(dy)
    if isinstance(dout, np.ndarray):
        dx, dw = dx.numpy(), dw.numpy()
        db = None if db is None else db.numpy()
    return dx, dw, db
