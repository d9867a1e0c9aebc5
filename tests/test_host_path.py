"""The host path of conv2d and MyConv2d: the ops' autograd lives in C++
(csrc/autograd.cpp), a call that records nothing builds no graph, MyConv2d
reads its attributes on every call (so changing them after construction
holds), and Conv2dFunction, no longer on that path, still computes the same."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import conv_ext
from conv_ext import MyConv2d

F64 = dict(dtype=torch.float64)
OPS = ["conv2d_forward", "conv2d_forward_activation", "conv2d_backward_input", "conv2d_backward_weight",
       "conv2d_backward_bias", "activation_backward"]


@pytest.mark.parametrize("name", OPS)
def test_every_op_has_its_autograd_kernel_in_cpp(name):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"conv_ext::{name}", "Autograd")
    # A Python autograd kernel (torch.library.register_autograd) would be a
    # Python function at that key; ours is the C++ one, so none is listed.
    table = torch._C._dispatch_dump_table(f"conv_ext::{name}")
    autograd_rows = [row for row in table.splitlines() if row.startswith("Autograd")]
    assert autograd_rows and not any("python" in row.lower() for row in autograd_rows), autograd_rows


@pytest.mark.parametrize("activation", [None, "relu"])
def test_graph_only_where_autograd_records(activation):
    m = MyConv2d(2, 3, 3, activation=activation)
    x = torch.randn(1, 2, 5, 5)
    with torch.no_grad():
        assert m(x).grad_fn is None
    y = m(x)
    assert y.grad_fn is not None and "BackwardCFunction" not in type(y.grad_fn).__name__
    m.requires_grad_(False)
    assert m(x).grad_fn is None  # nothing requires grad


@pytest.mark.parametrize("wanted", ["input", "weight", "bias"])
def test_one_gradient_at_a_time(wanted):
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 4, 7, 7, **F64), torch.randn(6, 2, 3, 3, **F64), torch.randn(6, **F64)
    leaves = dict(input=x, weight=w, bias=b)
    leaves[wanted] = leaves[wanted].clone().requires_grad_()
    args = (leaves["input"], leaves["weight"], leaves["bias"], 2, 1, 1, 2)
    y, y_ref = conv_ext.conv2d(*args), F.conv2d(*args)
    g = torch.randn_like(y)
    (ours,) = torch.autograd.grad(y, leaves[wanted], g)
    (ref,) = torch.autograd.grad(y_ref, leaves[wanted], g)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


CHANGES = [
    dict(stride=(2, 1)),
    dict(padding=(2, 0)),
    dict(dilation=2),               # an int, as F.conv2d also takes
    dict(padding="same"),
    dict(padding="valid", stride=2),
    dict(groups=2),
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_attributes_changed_after_construction(change):
    torch.manual_seed(1)
    m = MyConv2d(4, 6, (3, 4)).double()
    x = torch.randn(2, 4, 9, 10, **F64)
    m(x)  # a first call with the constructor's values
    for k, v in change.items():
        setattr(m, k, v)
    if "groups" in change:
        m.weight = nn.Parameter(m.weight[:, :2].clone())
    torch.testing.assert_close(m(x), nn.Conv2d._conv_forward(m, x, m.weight, m.bias), rtol=1e-12, atol=1e-12)


def test_changed_attributes_are_still_checked():
    m = MyConv2d(4, 6, 3)
    x = torch.randn(1, 4, 8, 8)
    m.stride = (0, 1)
    with pytest.raises(RuntimeError, match="expected stride to be > 0"):
        m(x)
    m.stride, m.padding = (2, 2), "same"
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        m(x)
    m.stride, m.padding = (1, 1), "full"
    with pytest.raises(ValueError, match="expected padding to be 'valid', 'same'"):
        m(x)


def test_module_input_checks_name_the_input():
    m = MyConv2d(4, 2, 3)
    with pytest.raises(TypeError, match="expected input to be a Tensor, got list"):
        m([[1.0]])
    with pytest.raises(RuntimeError, match=r"expected input to be a dense \(strided\) tensor"):
        m(torch.randn(1, 4, 6, 6).to_sparse())
    with pytest.raises(RuntimeError, match=r"expected 3-D .* or 4-D .* input, got input of shape \(1, 1, 4, 6, 6\)"):
        m(torch.randn(1, 1, 4, 6, 6))


@pytest.mark.parametrize("activation", [None, "leaky_relu"])
def test_conv2d_function_still_matches(activation):
    torch.manual_seed(2)
    x = torch.randn(2, 4, 7, 7, **F64, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, **F64, requires_grad=True)
    b = torch.randn(6, **F64, requires_grad=True)
    conf = ([2, 1], [1, 0], [1, 2], 2)
    extra = () if activation is None else (activation, 0.1)
    y = conv_ext.Conv2dFunction.apply(x, w, b, *conf, *extra)
    y_ref = conv_ext.conv2d(x, w, b, *conf, activation=activation, negative_slope=0.1)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    for a, r in zip(torch.autograd.grad(y, (x, w, b), g), torch.autograd.grad(y_ref, (x, w, b), g)):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
    torch.autograd.gradcheck(lambda x, w, b: conv_ext.Conv2dFunction.apply(x, w, b, *conf, *extra), (x, w, b))


def test_torch_compile_fullgraph_every_forward_path():
    # One layer per path of MyConv2d's forward: padding mode, 'same' with an
    # even kernel, a fused activation, plain; dynamo must trace them all.
    torch._dynamo.reset()
    torch.manual_seed(3)
    model = nn.Sequential(
        MyConv2d(2, 4, 3, padding=1, padding_mode="reflect"),
        MyConv2d(4, 4, 2, padding="same", activation="leaky_relu", negative_slope=0.1),
        MyConv2d(4, 3, 3, stride=2, groups=1, activation="sigmoid"),
    ).double()
    x = torch.randn(2, 2, 9, 9, **F64, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True)
    y, y_ref = compiled(x), model(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    params = [x, *model.parameters()]
    for a, b in zip(torch.autograd.grad(y, params, g), torch.autograd.grad(y_ref, params, g)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_overhead_benchmark_runs(capsys):
    # The benchmark verifies before it times; a tiny run keeps it runnable.
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import call_cost as overhead

    overhead.main(["--calls", "2", "--samples", "3", "--batch", "2", "--padding", "1", "--stride", "2"])
    out = capsys.readouterr().out
    assert "verified against nn.Conv2d" in out
    assert "forward (no_grad)" in out and "forward+backward" in out
