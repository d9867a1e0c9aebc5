"""64-bit sizes: the overflow guards fire with clear errors, and index math
stays right where sizes, offsets or padded extents pass 2^31.

On the CPU, logical sizes beyond 2^31 come from stride-0 (expanded) tensors
and from huge padding and strides, so no test needs gigabytes; on the GPU a
real input of more than 2^31 elements (4.3 GB in float16) is checked
against torch on slices.
"""
import pytest
import torch
import torch.nn.functional as F

import conv_ext

ops = conv_ext.ops
CUDA = torch.cuda.is_available()


def big(*shape, device="cpu", value=0.0):
    """A tensor of any logical size backed by a single element."""
    return torch.full((1,), value, device=device).expand(*shape)


ONE = ([1, 1], [0, 0], [1, 1], 1)

GUARDS = {
    "output-elements": (lambda d: ops.conv2d_forward(big(2**31, 1, 2**15, 1, device=d), big(2**31, 1, 1, 1, device=d), None, *ONE),
                        r"conv2d_forward: number of output elements overflows int64"),
    "output-bytes": (lambda d: ops.conv2d_forward(big(1, 1, 1, 2**62, device=d), big(1, 1, 1, 1, device=d), None, *ONE),
                     r"conv2d_forward: output of shape \[1, 1, 1, 4611686018427387904\] is too large"),
    "input-size-list": (lambda d: ops.conv2d_backward_input(big(1, 1, 1, 1, device=d), big(1, 1, 1, 1, device=d),
                                                            [2**32, 2**32, 1, 1], *ONE),
                        r"conv2d_backward_input: number of input elements overflows int64"),
    "weight-size-list": (lambda d: ops.conv2d_backward_weight(big(1, 1, 1, 1, device=d), big(1, 1, 1, 1, device=d),
                                                              [2**40, 1, 2**12, 2**12], *ONE),
                         r"conv2d_backward_weight: number of weight elements overflows int64"),
    "padded-height": (lambda d: ops.conv2d_forward(big(1, 1, 4, 4, device=d), big(1, 1, 1, 1, device=d), None,
                                                   [1, 1], [2**62, 0], [1, 1], 1),
                      r"padded height or dilated kernel height overflows int64 \(size 4, padding 4611686018427387904"),
    "dilated-width": (lambda d: ops.conv2d_forward(big(1, 1, 4, 4, device=d), big(1, 1, 1, 3, device=d), None,
                                                   [1, 1], [0, 0], [1, 2**62], 1),
                      r"padded width or dilated kernel width overflows int64 .*dilation 4611686018427387904"),
    "padded-width-plus-size": (lambda d: ops.conv2d_forward(big(1, 1, 1, 2**62, device=d), big(1, 1, 1, 1, device=d), None,
                                                            [1, 1], [0, 2**61], [1, 1], 1),
                               r"padded width or dilated kernel width overflows int64"),
}


@pytest.mark.parametrize("case", GUARDS)
def test_overflow_guards(device, case):
    call, match = GUARDS[case]
    with pytest.raises(RuntimeError, match=match):
        call(device)


def small_ints(*shape, device="cpu", seed=0):
    # Small integers: every sum below is exact in float32, so results compare
    # with torch.equal whatever the summation order.
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-4, 5, shape, generator=gen).float().to(device)


def test_input_of_2_32_logical_elements(device):
    """C*H*W = 2^32 (65536 channels of 256x256, stride 0 across channels):
    per-image and per-channel offsets pass 2^31."""
    x = small_ints(1, 1, 256, 256, device=device)
    xe = x.expand(1, 2**16, 256, 256)
    we = big(1, 2**16, 1, 1, device=device, value=1.0)
    conf = ([4, 4], [0, 0], [1, 1], 1)
    y = ops.conv2d_forward(xe, we, None, *conf)
    assert torch.equal(y, x[:, :, ::4, ::4] * 2**16)
    gy = small_ints(1, 1, 64, 64, device=device, seed=1)
    gw = ops.conv2d_backward_weight(gy, xe, [1, 2**16, 1, 1], *conf)
    assert torch.equal(gw, (gy * x[:, :, ::4, ::4]).sum().expand(1, 2**16, 1, 1))


def test_plane_of_2_32_logical_elements(device):
    """H*W = 2^32 (a 65536x65536 plane, stride 0 down the rows)."""
    row = small_ints(1, 1, 1, 2**16, device=device)
    x = row.expand(1, 1, 2**16, 2**16)
    w = torch.full((2, 1, 1, 1), 3.0, device=device)
    y = ops.conv2d_forward(x, w, None, [2**12, 2**12], [0, 0], [1, 1], 1)
    assert torch.equal(y, (3 * row[..., ::2**12]).expand(1, 2, 16, 16))


def test_padding_and_stride_beyond_int32(device):
    """Padding 2^31 with stride 2^31: the padded height is 2^32 + 4 and the
    three output rows sit at input rows -2^31, 0 and 2^31. Only the middle
    one sees data; index math in 32 bits would wrap onto real rows."""
    x = small_ints(2, 3, 4, 5, device=device)
    w = small_ints(4, 3, 1, 2, device=device, seed=1)
    conf = ([2**31, 1], [2**31, 0], [1, 1], 1)
    y = ops.conv2d_forward(x, w, None, *conf)
    assert y.shape == (2, 4, 3, 4)
    expected = torch.zeros_like(y)
    expected[:, :, 1] = F.conv2d(x[:, :, :1], w)[:, :, 0]
    assert torch.equal(y, expected)

    gy = small_ints(2, 4, 3, 4, device=device, seed=2)
    gi = ops.conv2d_backward_input(gy, w, list(x.shape), *conf)
    expected_gi = torch.zeros_like(x)
    expected_gi[:, :, :1] = torch.nn.grad.conv2d_input([2, 3, 1, 5], w, gy[:, :, 1:2])
    assert torch.equal(gi, expected_gi)
    gw = ops.conv2d_backward_weight(gy, x, list(w.shape), *conf)
    assert torch.equal(gw, torch.nn.grad.conv2d_weight(x[:, :, :1], list(w.shape), gy[:, :, 1:2]))


def _close_to(ours, ref, theirs=None):
    """float16 result against a float32 reference on the same values: at
    most twice torch's own float16 error, or a few float16 roundings."""
    ref = ref.float()
    err = (ours.float() - ref).abs().max().item()
    bound = 4 * torch.finfo(torch.float16).eps * ref.abs().max().item()
    if theirs is not None:
        bound = max(bound, 2 * (theirs.float() - ref).abs().max().item())
    assert err <= bound, f"error {err:.3g} > {bound:.3g}"


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_input_over_2_31_elements():
    """A real 1x8x16400x16400 float16 input (2.15e9 elements, 4.3 GB):
    forward, grad_input and grad_weight, checked on slices (stride 4 > kernel
    3, so output rows depend on disjoint input rows)."""
    n, c, h, w = 1, 8, 16400, 16400
    assert n * c * h * w > 2**31
    if torch.cuda.mem_get_info()[0] < 16 * 2**30:
        pytest.skip("needs 16 GiB of free GPU memory")
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, device="cuda", dtype=torch.float16)
    wt = torch.randn(2, c, 3, 3, device="cuda", dtype=torch.float16)
    conf = ([4, 4], [0, 0], [1, 1], 1)
    y = ops.conv2d_forward(x, wt, None, *conf)
    p = (h - 3) // 4 + 1
    assert y.shape == (n, 2, p, p)

    def rows(p0, p1):  # the input rows output rows [p0, p1) read
        return slice(4 * p0, 4 * (p1 - 1) + 3)

    for p0, p1 in [(0, 32), (p // 2, p // 2 + 32), (p - 32, p)]:
        xs = x[:, :, rows(p0, p1)]
        _close_to(y[:, :, p0:p1], F.conv2d(xs.float(), wt.float(), stride=4), F.conv2d(xs, wt, stride=4))

    gy = torch.randn_like(y)
    gi = ops.conv2d_backward_input(gy, wt, list(x.shape), *conf)
    assert gi.shape == x.shape
    del x  # keep the peak near 9 GB: x and gi are 4.3 GB each
    p0 = p - 32
    ref = torch.nn.grad.conv2d_input([n, c, h - 4 * p0, w], wt.float(), gy[:, :, p0:].float(), stride=4)
    _close_to(gi[:, :, 4 * p0:], ref)
    del gi

    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, device="cuda", dtype=torch.float16)  # the same values again
    gw = ops.conv2d_backward_weight(gy, x, list(wt.shape), *conf)
    ref = torch.zeros(wt.shape, device="cuda")
    for p0 in range(0, p, 512):
        p1 = min(p, p0 + 512)
        ref += torch.nn.grad.conv2d_weight(x[:, :, rows(p0, p1)].float(), list(wt.shape), gy[:, :, p0:p1].float(), stride=4)
    # A sum of 16.8M float16 products: compare at 1% of its largest entry.
    err = (gw.float() - ref).abs().max().item()
    assert err <= 1e-2 * ref.abs().max().item(), f"grad_weight error {err:.3g}"
