"""Fused conv + activation: the same values and gradients as the activation
applied after F.conv2d, through MyConv2d, conv2d and the ops."""
import pytest
import torch
import torch.nn.functional as F

import conv_ext

ops = conv_ext.ops
ACTS = {
    "relu": F.relu,
    "leaky_relu": lambda y: F.leaky_relu(y, 0.2),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


def data(device, dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 7, 6, generator=gen, dtype=torch.float64).to(device, dtype)
    w = torch.randn(6, 2, 3, 3, generator=gen, dtype=torch.float64).to(device, dtype)
    b = torch.randn(6, generator=gen, dtype=torch.float64).to(device, dtype)
    return x, w, b


@pytest.mark.parametrize("activation", list(ACTS))
def test_matches_activation_after_conv(activation, device):
    x, w, b = (t.requires_grad_() for t in data(device))
    conv = dict(stride=(2, 1), padding=1, groups=2)
    ours = conv_ext.conv2d(x, w, b, **conv, activation=activation, negative_slope=0.2)
    ref = ACTS[activation](F.conv2d(x, w, b, **conv))
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(ref)
    for a, r in zip(torch.autograd.grad(ours, (x, w, b), g), torch.autograd.grad(ref, (x, w, b), g)):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("activation", list(ACTS))
def test_gradcheck_and_gradgradcheck(activation, device):
    x, w, b = (t.requires_grad_() for t in data(device))

    def fn(x, w, b):
        return conv_ext.conv2d(x, w, b, padding=1, groups=2, activation=activation, negative_slope=0.2)

    assert torch.autograd.gradcheck(fn, (x, w, b))
    # relu and leaky_relu have kinks where gradgradcheck's finite differences
    # may straddle zero; the smooth ones are checked to second order.
    if activation in ("sigmoid", "tanh"):
        assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("activation", ["none", *ACTS])
def test_opcheck(activation, device):
    x, w, b = data(device)
    conf = ([1, 2], [1, 0], [1, 1], 2)
    y = ops.conv2d_forward_activation(x, w, b, *conf, activation, 0.2)
    torch.library.opcheck(ops.conv2d_forward_activation, (x, w, b, *conf, activation, 0.2))
    torch.library.opcheck(ops.activation_backward, (torch.randn_like(y), y, activation, 0.2))


def test_low_precision(device):
    x, w, b = data(device, torch.bfloat16)
    ours = conv_ext.conv2d(x, w, b, padding=1, groups=2, activation="tanh")
    ref64 = torch.tanh(F.conv2d(x.double(), w.double(), b.double(), padding=1, groups=2))
    torch_err = (torch.tanh(F.conv2d(x, w, b, padding=1, groups=2)).double() - ref64).abs().max()
    assert (ours.double() - ref64).abs().max() <= 2 * torch_err + 1e-2


def test_module():
    m = conv_ext.MyConv2d(3, 4, 3, padding=1, activation="leaky_relu", negative_slope=0.1)
    assert "activation='leaky_relu', negative_slope=0.1" in repr(m)
    x = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(m(x), F.leaky_relu(F.conv2d(x, m.weight, m.bias, padding=1), 0.1))
    plain = conv_ext.MyConv2d(3, 4, 3)
    assert "activation" not in repr(plain) and plain.activation is None


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(activation="gelu"), ValueError, "expected activation to be one of"),
        (dict(activation="leaky_relu", negative_slope=-0.1), ValueError, "negative_slope >= 0"),
        (dict(activation="relu", negative_slope="0.1"), TypeError, "expected negative_slope to be a number"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    x, w, b = data("cpu")
    with pytest.raises(error, match=match):
        conv_ext.conv2d(x, w, b, groups=2, **kwargs)
    with pytest.raises(error, match=match):
        conv_ext.MyConv2d(4, 6, 3, groups=2, **kwargs)


def test_op_rejects_unknown_activation():
    x, w, b = data("cpu")
    with pytest.raises(RuntimeError, match="expected activation to be one of 'none', 'relu'"):
        ops.conv2d_forward_activation(x, w, b, [1, 1], [0, 0], [1, 1], 2, "swish", 0.0)
    y = torch.randn(1, 2, 3, 3)
    with pytest.raises(RuntimeError, match="same shape"):
        ops.activation_backward(y, y[:, :1], "relu", 0.0)


@pytest.mark.parametrize("isa", ["auto", "avx2", "scalar"])
@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_vectorized_sigmoid_tanh_accuracy(act, isa, monkeypatch):
    """The CPU epilogue's vector sigmoid/tanh (its own exp) against torch's,
    over [-100, 100] (saturation, the tanh switch at |x| = 0.3, tiny values)
    in a run whose length leaves a vector tail, plus inf and NaN."""
    monkeypatch.setenv("CONV_EXT_CPU_ISA", isa)
    v = torch.cat([torch.linspace(-100, 100, 200003), torch.logspace(-30, 0, 1001),
                   torch.tensor([0.0, -0.0, 0.3, -0.3, float("inf"), float("-inf"), float("nan")])])
    one = torch.ones(1, 1, 1, 1)
    y = torch.ops.conv_ext.conv2d_forward_activation(
        v.view(1, 1, 1, -1), one, None, [1, 1], [0, 0], [1, 1], 1, act, 0.01).view(-1)
    ref = (torch.tanh if act == "tanh" else torch.sigmoid)(v.double())
    finite = ref.isfinite() & v.isfinite()
    rel = (y.double() - ref).abs() / ref.abs().clamp_min(1e-30)
    assert rel[finite & (ref.abs() > 1e-30)].max().item() < 1e-6
    assert torch.equal(y[~v.isnan()].isnan(), torch.zeros_like(y[~v.isnan()], dtype=torch.bool))
    assert y[v.isnan()].isnan().all()
    assert torch.equal(y[v.isinf()], ref[v.isinf()].float())
