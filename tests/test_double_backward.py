"""Double backward: the backward ops are differentiable through conv_ext's
own ops, so gradgradcheck passes in float64 and gradient penalties train as
they do with nn.Conv2d."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck, gradgradcheck

import conv_ext

ops = conv_ext.ops
F64 = torch.float64

# (N, C, H, W), (K, C/groups, R, S), stride, padding, dilation, groups, bias
CONFIGS = {
    "plain": ((2, 2, 5, 5), (3, 2, 3, 3), 1, 0, 1, 1, True),
    "stride2_pad1": ((1, 3, 6, 5), (2, 3, 3, 2), 2, 1, 1, 1, True),
    "stride_hw_pad_hw": ((2, 2, 6, 7), (2, 2, 2, 3), (2, 1), (1, 2), 1, 1, False),
    "dilation2": ((1, 2, 7, 6), (2, 2, 3, 2), 1, 1, 2, 1, True),
    "groups2": ((2, 4, 5, 5), (4, 2, 3, 3), 1, 1, 1, 2, False),
    "depthwise_strided_dilated": ((1, 3, 7, 7), (3, 1, 3, 3), 2, 2, (2, 1), 3, True),
    "pointwise": ((2, 3, 4, 3), (2, 3, 1, 1), 1, 0, 1, 1, True),
}


@pytest.fixture(autouse=True)
def _one_thread():
    """gradgradcheck runs thousands of tiny convolutions: on a loaded 2-core
    machine OpenMP's barriers dominate them. The formulas under test do not
    depend on the thread count (test_fuzz and test_determinism cover it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(device, config, seed=0):
    x_shape, w_shape, stride, padding, dilation, groups, bias = config
    gen = torch.Generator().manual_seed(seed)

    def leaf(shape):
        return torch.randn(shape, generator=gen, dtype=F64).to(device).requires_grad_()

    x, w = leaf(x_shape), leaf(w_shape)
    b = leaf((w_shape[0],)) if bias else None
    conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, w, b, conv


@pytest.mark.parametrize("name", CONFIGS)
def test_gradgradcheck_conv2d(device, name):
    x, w, b, conv = make(device, CONFIGS[name])
    inputs = (x, w) if b is None else (x, w, b)

    def fn(*args):
        return conv_ext.conv2d(*args, **conv)

    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


def _pair(v):
    return list(v) if isinstance(v, tuple) else [v, v]


@pytest.mark.parametrize("name", ["stride2_pad1", "groups2", "depthwise_strided_dilated"])
def test_gradgradcheck_backward_ops(device, name):
    """Each backward op on its own: its gradient (first and second order)
    through the formulas registered in conv_ext/_ops.py."""
    x, w, _, conv = make(device, CONFIGS[name])
    conf = (_pair(conv["stride"]), _pair(conv["padding"]), _pair(conv["dilation"]), conv["groups"])
    y_shape = F.conv2d(x, w, **conv).shape
    gy = torch.randn(y_shape, dtype=F64, device=device, requires_grad=True)

    def grad_input(gy, w):
        return ops.conv2d_backward_input(gy, w, list(x.shape), *conf)

    def grad_weight(gy, x):
        return ops.conv2d_backward_weight(gy, x, list(w.shape), *conf)

    for fn, inputs in [(grad_input, (gy, w)), (grad_weight, (gy, x)), (ops.conv2d_backward_bias, (gy,))]:
        assert gradcheck(fn, inputs)
        assert gradgradcheck(fn, inputs)


def test_batch_zero_double_backward(device):
    x, w, b, conv = make(device, CONFIGS["plain"])
    x = torch.randn(0, 2, 5, 5, dtype=F64, device=device, requires_grad=True)
    y = conv_ext.conv2d(x, w, b, **conv)
    gx, gw = torch.autograd.grad(y.sum(), (x, w), create_graph=True)
    (gw.sum() + gx.sum()).backward()
    assert torch.equal(w.grad, torch.zeros_like(w))


def _penalty_step(model, x, lam=0.5):
    """One step of a WGAN-GP style objective: the loss plus lam * the squared
    norm of d(output)/d(input), which needs the gradient of a gradient."""
    x = x.clone().requires_grad_()
    out = model(x)
    (g,) = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
    loss = out.tanh().mean() + lam * g.pow(2).sum()
    model.zero_grad()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _net():
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(),
        nn.Conv2d(6, 6, 3, stride=2, groups=2), nn.Softplus(),
        nn.Conv2d(6, 2, 2, dilation=2, bias=False),
    )


def test_gradient_penalty_step_matches_nn_conv2d(device):
    torch.manual_seed(0)
    ref = _net().to(device, F64)
    ours = conv_ext.replace_conv2d(_net()).to(device, F64)
    ours.load_state_dict(ref.state_dict())
    assert sum(isinstance(m, conv_ext.MyConv2d) for m in ours) == 3

    x = torch.randn(4, 3, 11, 11, dtype=F64, device=device)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1)
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.1)
    for _ in range(3):
        loss_ref, grads_ref = _penalty_step(ref, x)
        loss_ours, grads_ours = _penalty_step(ours, x)
        torch.testing.assert_close(loss_ours, loss_ref, rtol=1e-10, atol=1e-12)
        for g_ours, g_ref in zip(grads_ours, grads_ref):
            torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-11)
        opt_ref.step()
        opt_ours.step()
    for p_ours, p_ref in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p_ours, p_ref, rtol=1e-9, atol=1e-11)
