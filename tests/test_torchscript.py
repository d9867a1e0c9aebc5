"""TorchScript: torch.jit.script and torch.jit.trace take MyConv2d, and
models holding it, as they take nn.Conv2d; the scripted or traced module
computes what the eager one does, outputs and gradients, on conv_ext's ops,
and survives torch.jit.save/load."""
import copy
import io

import pytest
import torch
from torch import nn

from conv_ext import MyConv2d, replace_conv2d

F64 = dict(dtype=torch.float64)
# torch 2.13 deprecates TorchScript (in maintenance); deployments still use it.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning",
                                        "ignore:`torch.jit.trace` is deprecated:DeprecationWarning",
                                        "ignore:`torch.jit.save` is deprecated:DeprecationWarning",
                                        "ignore:`torch.jit.load` is deprecated:DeprecationWarning",
                                        "ignore:`torch.jit.trace_method` is deprecated:DeprecationWarning")


def several():
    """A model of MyConv2d in the configurations that take different paths
    in forward: a padding mode, groups, a fused activation, 'same' padding of
    an even kernel (padded by one extra row and column), stride and dilation,
    no bias."""
    return nn.Sequential(
        MyConv2d(3, 8, 3, padding=1, padding_mode="reflect"),
        MyConv2d(8, 8, 3, padding=1, groups=4, activation="relu"),
        MyConv2d(8, 6, 4, padding="same", dilation=(1, 2), activation="leaky_relu", negative_slope=0.2),
        MyConv2d(6, 6, 3, padding="valid", groups=6, padding_mode="circular", activation="sigmoid"),
        MyConv2d(6, 4, (3, 2), stride=(2, 1), padding=(1, 0), bias=False, activation="tanh"),
        MyConv2d(4, 4, 3, padding=2, dilation=2, padding_mode="replicate"),
    ).to(**F64)


def outputs_and_grads(model, x):
    x = x.detach().requires_grad_()
    y = model(x)
    g = torch.linspace(-1, 1, y.numel(), **F64).reshape(y.shape)
    grads = torch.autograd.grad(y, [x, *model.parameters()], g)
    return [y, *grads]


def assert_same(model, other, x):
    for a, b in zip(outputs_and_grads(model, x), outputs_and_grads(other, x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def op_names(graph):
    return {node.kind() for node in graph.nodes()}


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_script_single_layer(batched):
    torch.manual_seed(0)
    m = MyConv2d(3, 4, 3).to(**F64)
    scripted = torch.jit.script(m)
    x = torch.randn(2, 3, 7, 6, **F64) if batched else torch.randn(3, 7, 6, **F64)
    assert_same(m, scripted, x)
    assert "conv_ext::conv2d_forward" in op_names(scripted.inlined_graph)


def test_script_model_holding_several():
    torch.manual_seed(1)
    model = several()
    scripted = torch.jit.script(model)
    assert_same(model, scripted, torch.randn(2, 3, 11, 10, **F64))
    # The fused activations run in our kernels, not as separate torch ops.
    graph = scripted.inlined_graph
    assert {"conv_ext::conv2d_forward", "conv_ext::conv2d_forward_activation"} <= op_names(graph)
    assert not {"aten::_convolution", "aten::conv2d", "aten::relu", "aten::sigmoid"} & op_names(graph)


def test_trace_model_holding_several():
    torch.manual_seed(2)
    model = several()
    x = torch.randn(2, 3, 11, 10, **F64)
    traced = torch.jit.trace(model, (x,))
    assert_same(model, traced, x)
    assert_same(model, traced, torch.randn(1, 3, 11, 10, **F64))  # another batch size
    assert "conv_ext::conv2d_forward_activation" in op_names(traced.inlined_graph)


@pytest.mark.parametrize("compile_fn", ["script", "trace"])
def test_saved_and_loaded_module_gives_the_same_results(compile_fn):
    torch.manual_seed(3)
    model = several()
    x = torch.randn(2, 3, 9, 9, **F64)
    compiled = torch.jit.script(model) if compile_fn == "script" else torch.jit.trace(model, (x,))
    buffer = io.BytesIO()
    torch.jit.save(compiled, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    assert_same(model, loaded, x)


def test_script_model_after_replace_conv2d_matches_nn_conv2d():
    torch.manual_seed(4)
    ref = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding="same"), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2, padding_mode="reflect", padding=1),
    ).to(**F64)
    scripted = torch.jit.script(replace_conv2d(copy.deepcopy(ref)))
    assert_same(ref, scripted, torch.randn(3, 2, 8, 8, **F64))


def test_scripted_double_backward():
    torch.manual_seed(5)
    m = MyConv2d(2, 3, 3, padding=1, activation="tanh").to(**F64)
    scripted = torch.jit.script(m)
    x = torch.randn(1, 2, 5, 5, **F64, requires_grad=True)
    torch.autograd.gradgradcheck(lambda x: scripted(x), (x,))
    (g,) = torch.autograd.grad(scripted(x).square().sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), m.weight)
    (g_e,) = torch.autograd.grad(m(x).square().sum(), x, create_graph=True)
    (gg_e,) = torch.autograd.grad(g_e.square().sum(), m.weight)
    torch.testing.assert_close(gg, gg_e, rtol=1e-12, atol=1e-12)


def test_scripted_module_errors_name_the_argument():
    scripted = torch.jit.script(MyConv2d(3, 2, 3))
    with pytest.raises(RuntimeError, match=r"weight .* to have 4 input channels per group"):
        scripted(torch.randn(1, 4, 6, 6))
