"""The grouped blocked kernels (csrc/cpu/direct/grouped_blocked.h: float NCHW
grouped layers with 9 to 64 channels per group) on every instruction set,
against a float64 reference of torch.nn.functional.conv2d: RegNet's group
width 16 on 4 x 4 to 14 x 14 planes, channel counts that do not fill a
block of 16 on either side, strides 1 and 2, 1 x 1 and 5 x 5 kernels,
dilation, padding 0, strided views, the fused activations, and the same
bits for 1 and 2 threads."""
import pytest
import torch
import torch.nn.functional as F

import conv_ext  # noqa: F401  (registers torch.ops.conv_ext)
from reference import relerr

ops = torch.ops.conv_ext


# (N, C, H, W, K, kernel, stride, pad, dil, groups)
CASES = [
    (8, 64, 4, 4, 64, 3, 1, 1, 1, 4),      # group width 16, 4 x 4 plane
    (2, 48, 7, 7, 48, 3, 1, 1, 1, 3),      # 7 x 7
    (2, 32, 14, 14, 32, 3, 2, 1, 1, 2),    # stride 2
    (2, 32, 7, 7, 32, 3, 2, 1, 1, 2),      # stride 2, odd size
    (1, 40, 9, 6, 60, 3, 1, 1, 1, 2),      # 20 -> 30 channels per group
    (2, 24, 5, 8, 36, 3, 2, 0, 1, 2),      # 12 -> 18, stride 2, no padding
    (1, 128, 4, 4, 128, 3, 1, 1, 1, 2),    # 64 per group: four blocks
    (2, 36, 6, 6, 18, 3, 1, 1, 1, 2),      # 18 -> 9
    (2, 32, 8, 8, 32, 1, 1, 0, 1, 2),      # 1 x 1
    (1, 32, 9, 9, 32, 5, 1, 2, 1, 2),      # 5 x 5
    (1, 32, 10, 10, 32, 3, 1, 2, 2, 2),    # dilation 2
    (1, 20, 3, 11, 20, 3, (1, 2), 1, 1, 2),  # stride 2 along the columns only
]


def pair(v):
    return list(v) if isinstance(v, tuple) else [v, v]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_grouped_passes_match_float64(isa, case):
    n, c, h, w, k, ks, st, pd, dl, g = case
    st, pd, dl = pair(st), pair(pd), pair(dl)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    wt = torch.randn(k, c // g, ks, ks, generator=gen, dtype=torch.float64)
    b = torch.randn(k, generator=gen, dtype=torch.float64)
    y64 = F.conv2d(x, wt, b, st, pd, dl, g)
    gy = torch.randn(y64.shape, generator=gen, dtype=torch.float64)
    gx64, gw64, _ = torch.ops.aten.convolution_backward(
        gy, x, wt, [k], st, pd, dl, False, [0, 0], g, [True, True, True])
    a = (st, pd, dl, g)
    x, wt, b, gy = x.float(), wt.float(), b.float(), gy.float()
    got = (
        ops.conv2d_forward(x, wt, b, *a),
        ops.conv2d_backward_input(gy, wt, list(x.shape), *a),
        ops.conv2d_backward_weight(gy, x, list(wt.shape), *a),
    )
    for name, ours, ref in zip(("forward", "grad input", "grad weight"), got, (y64, gx64, gw64)):
        assert ours.dtype == torch.float32 and ours.shape == ref.shape, name
        err = relerr(ours, ref)
        assert err < 5e-6, f"{name}: rel err {err:.3g}"


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_grouped_forward_fuses_activations(isa, activation):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 48, 7, 7, generator=gen, dtype=torch.float64)
    wt = torch.randn(48, 16, 3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(48, generator=gen, dtype=torch.float64)
    for st in (1, 2):
        y = F.conv2d(x, wt, b, st, 1, 1, 3)
        ref = {"relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.1),
               "sigmoid": torch.sigmoid, "tanh": torch.tanh}[activation](y)
        got = ops.conv2d_forward_activation(
            x.float(), wt.float(), b.float(), [st, st], [1, 1], [1, 1], 3, activation, 0.1)
        assert relerr(got, ref) < 5e-6


def test_grouped_reads_and_writes_strided_views(isa):
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(2, 40, 9, 7, generator=gen, dtype=torch.float64)
    x = base[:, 4:36].transpose(2, 3)  # (2, 32, 7, 9), column stride 7
    wt = torch.randn(32, 16, 3, 3, generator=gen, dtype=torch.float64)
    gy = torch.randn(2, 32, 5, 4, generator=gen, dtype=torch.float64).transpose(2, 3)
    st, pd, dl = [2, 2], [1, 1], [1, 1]
    ref = torch.ops.aten.convolution_backward(
        gy, x, wt, None, st, pd, dl, False, [0, 0], 2, [True, True, False])
    a = (st, pd, dl, 2)
    xf, wf, gf = x.float(), wt.float(), gy.float()
    assert xf.stride(3) != 1 and gf.stride(3) != 1
    assert relerr(ops.conv2d_forward(xf, wf, None, *a), F.conv2d(x, wt, None, 2, 1, 1, 2)) < 5e-6
    assert relerr(ops.conv2d_backward_input(gf, wf, list(x.shape), *a), ref[0]) < 5e-6
    assert relerr(ops.conv2d_backward_weight(gf, xf, list(wt.shape), *a), ref[1]) < 5e-6


def test_grouped_results_do_not_depend_on_the_thread_count(isa):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(8, 160, 7, 7, generator=gen)
    wt = torch.randn(160, 16, 3, 3, generator=gen)
    before = torch.get_num_threads()
    outs = []
    try:
        for st in (1, 2):
            gy = torch.randn(8, 160, 7 // st + (st > 1), 7 // st + (st > 1), generator=gen)
            a = ([st, st], [1, 1], [1, 1], 10)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                outs.append((
                    ops.conv2d_forward(x, wt, None, *a),
                    ops.conv2d_backward_input(gy, wt, list(x.shape), *a),
                    ops.conv2d_backward_weight(gy, x, list(wt.shape), *a),
                ))
    finally:
        torch.set_num_threads(before)
    for one, two in ((outs[0], outs[1]), (outs[2], outs[3])):
        for a, b in zip(one, two):
            assert torch.equal(a, b)


def test_grouped_channels_last(isa):
    # channels_last tensors take the same kernels through their strides;
    # the output keeps the input's memory format.
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 32, 7, 7, generator=gen, dtype=torch.float64)
    wt = torch.randn(32, 16, 3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(32, generator=gen, dtype=torch.float64)
    for st in (1, 2):
        y = F.conv2d(x, wt, b, st, 1, 1, 2)
        gy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
        ref = torch.ops.aten.convolution_backward(
            gy, x, wt, [32], [st, st], [1, 1], [1, 1], False, [0, 0], 2, [True, True, False])
        cl = torch.channels_last
        xf = x.float().to(memory_format=cl)
        wf = wt.float().to(memory_format=cl)
        gf = gy.float().to(memory_format=cl)
        a = ([st, st], [1, 1], [1, 1], 2)
        out = ops.conv2d_forward(xf, wf, b.float(), *a)
        assert out.is_contiguous(memory_format=cl)
        assert relerr(out, y) < 5e-6
        assert relerr(ops.conv2d_backward_input(gf, wf, list(x.shape), *a), ref[0]) < 5e-6
        assert relerr(ops.conv2d_backward_weight(gf, xf, list(wt.shape), *a), ref[1]) < 5e-6
