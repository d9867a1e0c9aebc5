"""The direct kernels' fast paths (csrc/cpu/direct/direct_rows.h, direct_3x3_avx512.cpp)
at the edges of their geometry, on every instruction set, against
torch.nn.functional.conv2d in float32 and float64: row widths around the
vector width (one block, a shifted last block, several), heights below one
block of output rows, padding 0 to 2, flipped taps (grad input), several
channels per group, sources read in place with a row stride wider than the
row, and a width-1 image where the padding is wider than the data."""
import pytest
import torch
import torch.nn.functional as F

import conv_ext  # noqa: F401  (registers torch.ops.conv_ext)

ops = torch.ops.conv_ext


# (N, C, H, W, K, pad, dil, groups)
CASES = [
    (2, 3, 5, 16, 3, 1, 1, 3),     # exactly one block, fewer rows than a row block
    (1, 2, 9, 17, 2, 1, 1, 2),     # one block plus a shifted last block
    (1, 2, 13, 31, 2, 0, 1, 2),    # no padding
    (1, 2, 7, 33, 2, 2, 1, 2),     # padding 2: edge blocks reach two columns out
    (2, 4, 11, 56, 4, 1, 1, 4),    # mbv2-like row: 3.5 blocks
    (1, 3, 6, 64, 3, 1, 1, 3),     # whole blocks
    (1, 8, 10, 28, 8, 1, 1, 2),    # 4 channels per group
    (1, 6, 12, 40, 12, 1, 1, 6),   # channel multiplier 2
    (1, 2, 3, 20, 2, 1, 1, 2),     # 3 rows: below every row block
    (1, 2, 12, 25, 2, 1, 2, 2),    # dilation 2: the portable ring kernel
    (1, 2, 9, 1, 2, 1, 1, 2),      # width 1
]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_direct_passes_match_torch(isa, case, dtype, tol):
    n, c, h, w, k, pd, dl, g = case
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    wt = torch.randn(k, c // g, 3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(k, generator=gen, dtype=torch.float64)
    a = ([1, 1], [pd, pd], [dl, dl], g)
    y64 = F.conv2d(x, wt, b, 1, pd, dl, g)
    gy = torch.randn(y64.shape, generator=gen, dtype=torch.float64)
    gx64, gw64, gb64 = torch.ops.aten.convolution_backward(
        gy, x, wt, [k], [1, 1], [pd, pd], [dl, dl], False, [0, 0], g, [True, True, True])
    x, wt, b, gy = x.to(dtype), wt.to(dtype), b.to(dtype), gy.to(dtype)
    got = (
        ops.conv2d_forward(x, wt, b, *a),
        ops.conv2d_backward_input(gy, wt, list(x.shape), *a),
        ops.conv2d_backward_weight(gy, x, list(wt.shape), *a),
        ops.conv2d_backward_bias(gy),
    )
    for name, ours, ref in zip(("forward", "grad input", "grad weight", "grad bias"),
                               got, (y64, gx64, gw64, gb64)):
        err = (ours.double() - ref).abs().max().item() / ref.abs().max().item()
        assert err < tol, f"{name}: rel err {err:.3g}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_read_in_place_with_wide_row_stride(isa, dtype):
    # Slicing the width keeps a unit column stride and a row stride of 40:
    # the kernels read such rows in place, the padding lanes must not pick up
    # the columns beyond the slice.
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(2, 3, 21, 40, generator=gen, dtype=dtype)
    x = base[..., 3:36]
    wt = torch.randn(3, 1, 3, 3, generator=gen, dtype=dtype)
    gy_base = torch.randn(2, 3, 21, 40, generator=gen, dtype=dtype)
    gy = gy_base[..., 2:35]
    a = ([1, 1], [1, 1], [1, 1], 3)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(
        ops.conv2d_forward(x, wt, None, *a), F.conv2d(x, wt, None, 1, 1, 1, 3),
        rtol=tol, atol=tol)
    ref_gx, ref_gw, _ = torch.ops.aten.convolution_backward(
        gy, x, wt, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 3, [True, True, False])
    torch.testing.assert_close(
        ops.conv2d_backward_input(gy, wt, list(x.shape), *a), ref_gx, rtol=tol, atol=tol)
    torch.testing.assert_close(
        ops.conv2d_backward_weight(gy, x, list(wt.shape), *a), ref_gw, rtol=tol, atol=tol)


def test_non_finite_values_beside_the_padding_stay_out(isa):
    # The first and last blocks of a row load the plane's neighbouring
    # elements only under a mask: an infinity just outside the sliced rows
    # must not reach the output.
    base = torch.zeros(1, 2, 8, 20)
    base[..., 0] = float("inf")
    base[..., 19] = float("nan")
    x = base[..., 1:19]
    wt = torch.ones(2, 1, 3, 3)
    y = ops.conv2d_forward(x, wt, None, [1, 1], [1, 1], [1, 1], 2)
    assert torch.isfinite(y).all()


# channels_last depthwise (csrc/cpu/direct/depthwise_nhwc.h): (N, C, H, W, stride,
# pad, dil): channel counts around the vector blocks (2 x 16, 16, the scalar
# tail), rows narrower than a 4-pixel block, stride 2, wide padding.
NHWC = [
    (2, 40, 9, 13, 1, 1, 1),
    (1, 144, 6, 7, 1, 1, 1),
    (1, 3, 5, 3, 1, 1, 1),
    (2, 17, 11, 10, 2, 1, 1),
    (1, 33, 8, 9, 1, 2, 2),
    (1, 64, 7, 5, 1, 2, 1),
]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("case", NHWC, ids=[str(c) for c in NHWC])
def test_depthwise_channels_last_matches_torch(isa, case, dtype, tol):
    n, c, h, w, st, pd, dl = case
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    wt = torch.randn(c, 1, 3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(c, generator=gen, dtype=torch.float64)
    y64 = F.conv2d(x, wt, b, st, pd, dl, c)
    gy = torch.randn(y64.shape, generator=gen, dtype=torch.float64)
    gx64, gw64, _ = torch.ops.aten.convolution_backward(
        gy, x, wt, [c], [st, st], [pd, pd], [dl, dl], False, [0, 0], c, [True, True, False])
    cl = torch.channels_last
    x, gy = x.to(dtype).contiguous(memory_format=cl), gy.to(dtype).contiguous(memory_format=cl)
    wt, b = wt.to(dtype), b.to(dtype)
    a = ([st, st], [pd, pd], [dl, dl], c)
    got = (
        ops.conv2d_forward(x, wt, b, *a),
        ops.conv2d_backward_input(gy, wt, list(x.shape), *a),
        ops.conv2d_backward_weight(gy, x, list(wt.shape), *a),
    )
    for name, ours, ref in zip(("forward", "grad input", "grad weight"), got, (y64, gx64, gw64)):
        err = (ours.double() - ref).abs().max().item() / ref.abs().max().item()
        assert err < tol, f"{name}: rel err {err:.3g}"
