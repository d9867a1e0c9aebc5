"""The seed's conv_forward / conv_backward layer API against a naive numpy
reference written from its definition."""
import numpy as np
import pytest
import torch

from conv_ext import cs231n


def naive_forward(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    f, _, hh, ww = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = 1 + (h + 2 * pad - hh) // stride, 1 + (wd + 2 * pad - ww) // stride
    out = np.zeros((n, f, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride : i * stride + hh, j * stride : j * stride + ww]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


def naive_backward(dout, x, w, stride, pad):
    n, c, h, wd = x.shape
    f, _, hh, ww = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            sl = (slice(None), slice(None), slice(i * stride, i * stride + hh), slice(j * stride, j * stride + ww))
            dw += np.tensordot(dout[:, :, i, j], xp[sl], axes=([0], [0]))
            dxp[sl] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
    return dxp[:, :, pad : pad + h, pad : pad + wd], dw, dout.sum(axis=(0, 2, 3))


@pytest.mark.parametrize("stride, pad", [(1, 0), (1, 1), (2, 1), (3, 2)])
def test_numpy_in_numpy_out(stride, pad):
    rng = np.random.default_rng(0)
    size = 3 - 2 * pad + 3 * stride  # an integer output size, as the API requires
    x, w, b = rng.standard_normal((2, 3, size, size)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    param = {"stride": stride, "pad": pad}
    out, cache = cs231n.conv_forward(x, w, b, param)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, naive_forward(x, w, b, stride, pad), rtol=1e-10, atol=1e-10)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = cs231n.conv_backward(dout, cache)
    for ours, ref in zip((dx, dw, db), naive_backward(dout, x, w, stride, pad)):
        assert isinstance(ours, np.ndarray)
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)


def test_tensors_in_tensors_out():
    x, w, b = torch.randn(1, 2, 5, 5, dtype=torch.float64), torch.randn(3, 2, 3, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    out, cache = cs231n.conv_forward(x, w, b, {"stride": 1, "pad": 1})
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 5, 5)
    dx, dw, db = cs231n.conv_backward(torch.ones_like(out), cache)
    assert all(isinstance(t, torch.Tensor) for t in (dx, dw, db))


@pytest.mark.parametrize(
    "param, error, match",
    [
        ({"pad": 1}, ValueError, "missing 'stride'"),
        ({"stride": 1}, ValueError, "missing 'pad'"),
        ({"stride": 0, "pad": 1}, ValueError, r"conv_param\['stride'\] >= 1"),
        ({"stride": 1, "pad": -1}, ValueError, r"conv_param\['pad'\] >= 0"),
        ({"stride": 1.5, "pad": 1}, TypeError, r"conv_param\['stride'\] to be an int"),
        ({"stride": 2, "pad": 0}, ValueError, "not divisible by stride 2"),
        ([1, 1], TypeError, "conv_param to be a dict"),
    ],
)
def test_bad_conv_param(param, error, match):
    x, w, b = np.zeros((1, 1, 6, 6)), np.zeros((1, 1, 3, 3)), np.zeros(1)
    with pytest.raises(error, match=match):
        cs231n.conv_forward(x, w, b, param)


def test_bad_arrays():
    with pytest.raises(TypeError, match="expected x to be a numpy array or a torch.Tensor"):
        cs231n.conv_forward([[1.0]], np.zeros((1, 1, 1, 1)), None, {"stride": 1, "pad": 0})
    with pytest.raises(ValueError, match="expected cache"):
        cs231n.conv_backward(np.zeros((1, 1, 1, 1)), None)


def _forward_case(x_shape, w_shape, b_shape, w_dtype=np.float64):
    x, w = np.zeros(x_shape), np.zeros(w_shape, dtype=w_dtype)
    b = None if b_shape is None else np.zeros(b_shape)
    return lambda: cs231n.conv_forward(x, w, b, {"stride": 1, "pad": 1})


@pytest.mark.parametrize("call, error, match", [
    (_forward_case((2, 3, 5, 5), (4, 2, 3, 3), (4,)), ValueError, r"expected w \(F, C, HH, WW\) to have C = 3 channels like x"),
    (_forward_case((2, 3, 5, 5), (4, 3, 3, 3), (3,)), ValueError, r"expected b of shape \(4,\)"),
    (_forward_case((2, 3, 5, 5), (4, 3, 3, 3), None, np.float32), RuntimeError,
     r"^conv_forward: expected x and w to have the same dtype"),
])
def test_forward_errors_name_the_apis_arguments(call, error, match):
    with pytest.raises(error, match=match) as info:
        call()
    assert not any(name in str(info.value) for name in ("weight", "bias", "conv2d_forward"))


@pytest.mark.parametrize("dout, error, match", [
    (np.zeros((2, 4, 4, 4)), ValueError, r"expected dout of shape \(2, 4, 5, 5\)"),
    (np.zeros((4, 5, 5)), ValueError, r"expected dout of shape \(2, 4, 5, 5\)"),
    (np.zeros((2, 4, 5, 5), dtype=np.float32), RuntimeError, r"^conv_backward: expected dout and w to have the same dtype"),
])
def test_backward_errors_name_the_apis_arguments(dout, error, match):
    _, cache = cs231n.conv_forward(np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3)), np.zeros(4), {"stride": 1, "pad": 1})
    with pytest.raises(error, match=match) as info:
        cs231n.conv_backward(dout, cache)
    assert not any(name in str(info.value) for name in ("grad_output", "weight", "conv2d_backward"))
