"""The blocked depthwise kernels (csrc/cpu/direct/depthwise_blocked.h: float
NCHW depthwise layers with output rows narrower than 16 or strides above 1,
16 channels per vector) on every instruction set, against a float64
reference of torch.nn.functional.conv2d: channel counts around the block
of 16, planes from 1 x 1 to 14 x 14 and a strided 56 x 56 one, 3 x 3, 5 x 5
and 7 x 7 kernels, strides 1 and 2 (also per dimension), padding 0 to 3,
dilation, strided views, the fused activations, and the same bits for 1
and 2 threads."""
import pytest
import torch
import torch.nn.functional as F

import conv_ext  # noqa: F401  (registers torch.ops.conv_ext)
from reference import relerr

ops = torch.ops.conv_ext


# (N, C, H, W, kernel, stride, pad, dil)
CASES = [
    (8, 48, 4, 4, 3, 1, 1, 1),       # whole blocks, 4 x 4 plane
    (2, 20, 7, 7, 3, 1, 1, 1),       # one block and a partial one
    (3, 5, 14, 14, 3, 1, 1, 1),      # a partial block alone
    (2, 33, 1, 1, 3, 1, 1, 1),       # 1 x 1 plane: only the centre tap
    (2, 16, 9, 11, 3, 2, 1, 1),      # stride 2, odd sizes
    (1, 24, 8, 8, 3, 2, 1, 1),       # stride 2, even sizes
    (2, 18, 56, 56, 3, 2, 1, 1),     # the strided mobilenet layer
    (2, 17, 10, 9, 3, 2, 0, 1),      # stride 2, no padding: the last row untouched
    (2, 16, 14, 14, 5, 1, 2, 1),     # 5 x 5
    (2, 20, 13, 15, 5, 2, 2, 1),     # 5 x 5 stride 2
    (1, 16, 12, 12, 7, 1, 3, 1),     # 7 x 7
    (1, 16, 7, 7, 7, 1, 3, 1),       # 7 x 7 on a 7 x 7 plane
    (1, 16, 20, 18, 7, 1, 3, 1),     # 7 x 7 on a plane wider than a vector
    (1, 16, 17, 16, 5, 1, 2, 1),     # 5 x 5 on a plane wider than a vector
    (2, 16, 11, 9, 3, 1, 2, 2),      # dilation 2
    (1, 19, 6, 13, 3, (1, 2), 1, 1), # stride 2 along the columns only
    (1, 16, 4, 6, (1, 3), 1, (0, 1), 1),  # 1 x 3 taps
]


def pair(v):
    return list(v) if isinstance(v, tuple) else [v, v]


def reference(x, wt, b, gy, st, pd, dl, c):
    y = F.conv2d(x, wt, b, st, pd, dl, c)
    gx, gw, gb = torch.ops.aten.convolution_backward(
        gy, x, wt, [c], st, pd, dl, False, [0, 0], c, [True, True, True])
    return y, gx, gw, gb


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_blocked_passes_match_float64(isa, case):
    n, c, h, w, k, st, pd, dl = case
    k, st, pd, dl = pair(k), pair(st), pair(pd), pair(dl)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    wt = torch.randn(c, 1, *k, generator=gen, dtype=torch.float64)
    b = torch.randn(c, generator=gen, dtype=torch.float64)
    y64 = F.conv2d(x, wt, b, st, pd, dl, c)
    gy = torch.randn(y64.shape, generator=gen, dtype=torch.float64)
    refs = reference(x, wt, b, gy, st, pd, dl, c)
    a = (st, pd, dl, c)
    x, wt, b, gy = x.float(), wt.float(), b.float(), gy.float()
    got = (
        ops.conv2d_forward(x, wt, b, *a),
        ops.conv2d_backward_input(gy, wt, list(x.shape), *a),
        ops.conv2d_backward_weight(gy, x, list(wt.shape), *a),
        ops.conv2d_backward_bias(gy),
    )
    for name, ours, ref in zip(("forward", "grad input", "grad weight", "grad bias"), got, refs):
        assert ours.dtype == torch.float32 and ours.shape == ref.shape, name
        err = relerr(ours, ref)
        assert err < 2e-6, f"{name}: rel err {err:.3g}"


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_blocked_forward_fuses_activations(isa, activation):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 40, 7, 7, generator=gen, dtype=torch.float64)
    wt = torch.randn(40, 1, 3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(40, generator=gen, dtype=torch.float64)
    for st in (1, 2):
        y = F.conv2d(x, wt, b, st, 1, 1, 40)
        ref = {"relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.1),
               "sigmoid": torch.sigmoid, "tanh": torch.tanh}[activation](y)
        got = ops.conv2d_forward_activation(
            x.float(), wt.float(), b.float(), [st, st], [1, 1], [1, 1], 40, activation, 0.1)
        assert relerr(got, ref) < 2e-6


def test_blocked_reads_and_writes_strided_views(isa):
    # Transposed planes (column stride W) and a channel slice of a wider
    # tensor: the block copies take any strides.
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(3, 40, 9, 7, generator=gen, dtype=torch.float64)
    x = base[:, 4:36].transpose(2, 3)  # (3, 32, 7, 9), column stride 7
    wt = torch.randn(32, 1, 3, 3, generator=gen, dtype=torch.float64)
    gy_base = torch.randn(3, 32, 4, 5, generator=gen, dtype=torch.float64)
    gy = gy_base.transpose(2, 3).contiguous().transpose(2, 3)
    st, pd, dl = [2, 2], [1, 1], [1, 1]
    refs = reference(x, wt, None, gy, st, pd, dl, 32)
    a = (st, pd, dl, 32)
    xf, wf, gf = x.float(), wt.float(), gy.float()
    assert xf.stride(3) != 1 and gf.stride(3) != 1
    assert relerr(ops.conv2d_forward(xf, wf, None, *a), refs[0]) < 2e-6
    assert relerr(ops.conv2d_backward_input(gf, wf, list(x.shape), *a), refs[1]) < 2e-6
    assert relerr(ops.conv2d_backward_weight(gf, xf, list(wt.shape), *a), refs[2]) < 2e-6


def test_blocked_results_do_not_depend_on_the_thread_count(isa):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(8, 96, 14, 14, generator=gen)
    wt = torch.randn(96, 1, 5, 5, generator=gen)
    gy = torch.randn(8, 96, 7, 7, generator=gen)
    a = ([2, 2], [2, 2], [1, 1], 96)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append((
                ops.conv2d_forward(x, wt, None, *a),
                ops.conv2d_backward_input(gy, wt, list(x.shape), *a),
                ops.conv2d_backward_weight(gy, x, list(wt.shape), *a),
            ))
    finally:
        torch.set_num_threads(before)
    for one, two in zip(*outs):
        assert torch.equal(one, two)


def test_blocked_mixed_memory_formats(isa):
    # A channels_last input with an NCHW grad_output (or the reverse) is not
    # the channels_last kernel's case: the blocked kernels read both through
    # their strides.
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 24, 9, 9, generator=gen, dtype=torch.float64)
    wt = torch.randn(24, 1, 3, 3, generator=gen, dtype=torch.float64)
    y = F.conv2d(x, wt, None, 2, 1, 1, 24)
    gy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    ref = torch.ops.aten.convolution_backward(
        gy, x, wt, None, [2, 2], [1, 1], [1, 1], False, [0, 0], 24, [True, True, False])
    a = ([2, 2], [1, 1], [1, 1], 24)
    xf = x.float().to(memory_format=torch.channels_last)
    gf = gy.float()
    assert relerr(ops.conv2d_backward_weight(gf, xf, list(wt.shape), *a), ref[1]) < 2e-6
    assert relerr(ops.conv2d_backward_input(gf, wt.float(), list(x.shape), *a), ref[0]) < 2e-6


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17])
def test_blocked_bfloat16_copies_round_exactly(isa, width):
    # bfloat16 planes are widened into the float blocks and rounded once on
    # the way out (channel_blocks.h: vector copies at AVX2 and AVX-512).
    # With the centre tap 1 and the others 0, each output is x + b summed
    # exactly in float, so it must equal torch's rounding of that float bit
    # for bit, ties to even and NaN included, at every row length (the
    # vector copies' partial runs).
    gen = torch.Generator().manual_seed(width)
    c = 32
    x = torch.randn(2, c, 3, width, generator=gen).mul(2.0 ** torch.randint(
        -8, 9, (2, c, 3, width), generator=gen)).bfloat16()
    x[0, 3, 1, 0] = float("nan")
    b = torch.randn(c, generator=gen).bfloat16()
    wt = torch.zeros(c, 1, 3, 3, dtype=torch.bfloat16)
    wt[:, :, 1, 1] = 1
    y = ops.conv2d_forward(x, wt, b, [1, 1], [1, 1], [1, 1], c)
    # 0 * NaN spreads the NaN to the neighbours, as in the reference.
    ref = F.conv2d(x.float(), wt.float(), b.float(), 1, 1, 1, c).bfloat16()
    assert torch.equal(y.isnan(), ref.isnan())
    assert torch.equal(y.view(torch.int16)[~y.isnan()], ref.view(torch.int16)[~ref.isnan()])
    assert (y.view(torch.int16)[y.isnan()] == 0x7FC0).all()
