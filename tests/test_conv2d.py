"""conv_ext.conv2d against torch.nn.functional.conv2d: forward and all three
gradients, over a randomized sweep and the corners by name."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import conv_ext
from reference import low_precision_tolerance, ours_conv_and_grads, torch_conv_and_grads

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=1e-4)}


def assert_matches(x, w, b, **conv):
    ref_y, ref_g = torch_conv_and_grads(x, w, b, **conv)
    y, g = ours_conv_and_grads(conv_ext.conv2d, x, w, b, **conv)
    tol = TOL[x.dtype]
    assert y.shape == ref_y.shape and y.dtype == ref_y.dtype
    torch.testing.assert_close(y, ref_y, **tol)
    for ours, ref in zip(g, ref_g):
        torch.testing.assert_close(ours, ref, **tol)


def make(shape_x, shape_w, bias, dtype, device, layout="contiguous", seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape_x, generator=gen, dtype=torch.float64).to(device, dtype)
    w = torch.randn(shape_w, generator=gen, dtype=torch.float64).to(device, dtype)
    b = torch.randn(shape_w[0], generator=gen, dtype=torch.float64).to(device, dtype) if bias else None
    if layout == "channels_last" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # a sliced, non-contiguous view with the same values
        x = torch.cat([x, x], dim=-1)[..., : x.shape[-1]]
        w = w.transpose(-1, -2).contiguous().transpose(-1, -2)
    return x, w, b


@st.composite
def conv_case(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise_mult = draw(st.booleans())
    cg = draw(st.integers(1, 3))
    c = cg * groups
    k = groups * (draw(st.integers(1, 3)) if not depthwise_mult else draw(st.integers(1, 2)))
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if draw(st.booleans()) and stride == (1, 1):
        padding = draw(st.sampled_from(["same", "valid"]))
        pad_hw = (0, 0) if padding == "valid" else ((r - 1) * dilation[0], (s - 1) * dilation[1])
    else:
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        pad_hw = tuple(2 * p for p in padding)
    min_h = max(1, dilation[0] * (r - 1) + 1 - pad_hw[0])
    min_w = max(1, dilation[1] * (s - 1) + 1 - pad_hw[1])
    h = draw(st.integers(min_h, min_h + 5))
    w = draw(st.integers(min_w, min_w + 5))
    n = draw(st.integers(0, 2))
    unbatched = draw(st.integers(0, 5)) == 0
    shape_x = (c, h, w) if unbatched else (n, c, h, w)
    return dict(shape_x=shape_x, shape_w=(k, cg, r, s), bias=draw(st.booleans()),
                layout=draw(st.sampled_from(["contiguous", "channels_last", "strided"])),
                conv=dict(stride=stride, padding=padding, dilation=dilation, groups=groups))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_case())
def test_sweep_against_torch(case, dtype, device):
    x, w, b = make(case["shape_x"], case["shape_w"], case["bias"], dtype, device, case["layout"])
    assert_matches(x, w, b, **case["conv"])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_case())
def test_sweep_low_precision(case, dtype, device):
    x, w, b = make(case["shape_x"], case["shape_w"], case["bias"], dtype, device, case["layout"])
    ours = ours_conv_and_grads(conv_ext.conv2d, x, w, b, **case["conv"])
    low_precision_tolerance(x, w, b, ours, case["conv"])


@pytest.mark.parametrize(
    "shape_x, shape_w, conv",
    [
        ((2, 3, 7, 9), (4, 3, 7, 9), {}),  # kernel equal to the input
        ((1, 2, 10, 6), (3, 2, 1, 5), dict(stride=(3, 1))),  # non-square kernel
        ((2, 4, 8, 8), (4, 1, 3, 3), dict(padding=1, groups=4)),  # depthwise
        ((2, 4, 8, 8), (8, 1, 3, 3), dict(padding=1, groups=4)),  # depthwise multiplier 2
        ((1, 6, 9, 9), (6, 2, 3, 3), dict(stride=2, padding=2, dilation=2, groups=3)),
        ((2, 3, 8, 7), (2, 3, 4, 2), dict(padding="same")),  # even kernel: asymmetric pad
        ((2, 3, 9, 8), (2, 3, 2, 3), dict(padding="same", dilation=(3, 2))),
        ((2, 3, 5, 5), (2, 3, 2, 2), dict(padding="valid")),
        ((0, 3, 5, 5), (2, 3, 3, 3), dict(padding=1)),  # empty batch
        ((3, 5, 5), (2, 3, 3, 3), dict(padding=1)),  # unbatched
        ((1, 1, 50, 50), (1, 1, 3, 3), dict(padding=1)),  # the seed's fitting problem
        ((1, 1, 100, 100), (4, 1, 3, 3), {}),  # the seed's pattern problem
        ((2, 3, 12, 11), (5, 3, 1, 1), dict(stride=2)),  # strided 1x1
    ],
)
@pytest.mark.parametrize("bias", [False, True])
def test_named_cases(shape_x, shape_w, conv, bias, device):
    x, w, b = make(shape_x, shape_w, bias, torch.float64, device)
    assert_matches(x, w, b, **conv)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("weight_cl", [False, True])
def test_output_memory_format_matches_torch(layout, weight_cl, device):
    x, w, b = make((2, 4, 6, 6), (3, 4, 3, 3), True, torch.float32, device, layout)
    if weight_cl:
        w = w.contiguous(memory_format=torch.channels_last)
    ours, ref = conv_ext.conv2d(x, w, b, padding=1), F.conv2d(x, w, b, padding=1)
    for fmt in (torch.contiguous_format, torch.channels_last):
        assert ours.is_contiguous(memory_format=fmt) == ref.is_contiguous(memory_format=fmt)


def test_permuted_and_expanded_inputs(device):
    x = torch.randn(3, 2, 6, 7, dtype=torch.float64, device=device).permute(1, 0, 2, 3)  # (2, 3, 6, 7)
    w = torch.randn(1, 3, 1, 3, dtype=torch.float64, device=device).expand(4, 3, 3, 3)
    assert_matches(x, w, None, padding=1)


def test_gradcheck(device):
    x, w, b = make((2, 4, 6, 5), (6, 2, 3, 2), True, torch.float64, device)
    args = [t.requires_grad_() for t in (x, w, b)]
    for conv in [dict(stride=2, padding=1), dict(padding="same", dilation=2), dict(stride=(1, 3), dilation=(2, 1))]:
        assert torch.autograd.gradcheck(lambda x, w, b: conv_ext.conv2d(x, w, b, groups=2, **conv), args)


def test_only_needed_gradients_are_computed():
    # The backward calls the ops from C++ (csrc/autograd.cpp); a dispatch
    # mode sees each call below autograd.
    from torch.utils._python_dispatch import TorchDispatchMode

    class LogOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "conv_ext":
                self.calls.append(func._opname)
            return func(*args, **(kwargs or {}))

    x = torch.randn(1, 2, 5, 5)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    b = torch.randn(3)
    y = conv_ext.conv2d(x, w, b)
    with LogOps() as log:
        y.sum().backward()
    assert log.calls == ["conv2d_backward_weight"]
