"""bfloat16 on the CPU's packed GEMM (csrc/cpu/gemm/), on every level that
takes it: the bfloat16-pair panels with vdpbf16ps ("auto" on a CPU with
AVX-512 BF16), the same panels with the scalar reference kernel ("scalar"),
and the float-widening panels with the AVX-512F and AVX2 FMA kernels
("avx512", "avx2"; also "auto" on CPUs without BF16).

Each pass (forward, grad input by gather at stride 1 and by col2im at stride
2, grad weight) is checked within twice torch's own bfloat16 error against
a float64 reference, and exactly on integer data, where every product and
sum is exact in float: a pair packed in the wrong order, a reduction step
paired with the wrong one, or an odd depth's padding step left unzeroed
changes the result, where the tolerance test may not notice."""
import pytest
import torch
import torch.nn.functional as F

import conv_ext
from reference import has_avx512_bf16, low_precision_tolerance, ours_conv_and_grads

ops = torch.ops.conv_ext

# (name, N, C, H, W, K, R, S, stride, pad, dil, groups, channels_last); every
# row takes the packed GEMM in bfloat16 (heuristic.h: the direct kernels need
# <= 8 channels per group on both sides, Winograd and the window paths are
# float32 only).
CASES = [
    # channels-major forward and gather grad input; C*R*S = 99 and K*R*S =
    # 108 taps: an odd depth, and a pixel tile across rows
    ("nchw_odd_depth", 2, 11, 9, 13, 12, 3, 3, 1, 1, 1, 1, False),
    # several depth blocks (256 taps) with an odd last block: C*R*S = 333
    ("nchw_depth_blocks", 2, 37, 8, 7, 20, 3, 3, 1, 1, 1, 1, False),
    # pixels-major with (r, s, c) taps, odd channel counts on both sides
    ("nhwc_odd", 2, 13, 7, 9, 15, 3, 3, 1, 1, 1, 1, True),
    # stride 2: grad input by col2im (depth K = 33, odd)
    ("col2im_stride2", 2, 10, 11, 12, 33, 3, 3, 2, 1, 1, 1, False),
    ("col2im_stride2_nhwc", 2, 9, 10, 9, 17, 3, 3, 2, 1, 1, 1, True),
    # dilation, and asymmetric kernel
    ("dilated", 2, 12, 12, 11, 14, 3, 2, 1, 2, 2, 1, False),
    # groups of 9 and 12 channels (the blocked grouped kernels are float32)
    ("groups", 2, 18, 8, 8, 24, 3, 3, 1, 1, 1, 2, False),
    ("groups_nhwc", 2, 27, 6, 7, 12, 3, 3, 1, 1, 1, 3, True),
    # 1 x 1: depth = C = 21, odd
    ("pointwise", 3, 21, 6, 5, 40, 1, 1, 1, 0, 1, 1, False),
    # few pixels, many channels (gemm_few_pixels.h: >= 2 * 32 * threads
    # output channels): forward and grad input split channels between
    # threads
    ("few_pixels", 2, 131, 4, 5, 136, 3, 3, 1, 1, 1, 1, False),
    # ... with an even tap count (C*R*S = 1170): the forward reads the
    # weight rows in place as pairs (gemm_few_pixels_rows)
    ("few_pixels_rows", 2, 130, 3, 5, 140, 3, 3, 1, 1, 1, 1, False),
    # a grad-weight depth (N*P*Q = 3 * 97 pixels) over two depth blocks, odd
    ("weight_depth_odd", 3, 8, 1, 97, 9, 1, 3, 1, 1, 1, 1, False),
]
IDS = [c[0] for c in CASES]


def make(case, dtype, generator_seed=0, integers=False):
    _, N, C, H, W, K, R, S, st, pad, dil, groups, cl = case
    g = torch.Generator().manual_seed(generator_seed)
    if integers:
        x = torch.randint(-1, 2, (N, C, H, W), generator=g).to(dtype)
        w = torch.randint(-1, 2, (K, C // groups, R, S), generator=g).to(dtype)
        b = torch.randint(-2, 3, (K,), generator=g).to(dtype)
    else:
        x = torch.randn(N, C, H, W, generator=g).to(dtype)
        w = (torch.randn(K, C // groups, R, S, generator=g) / (C // groups * R * S) ** 0.5).to(dtype)
        b = torch.randn(K, generator=g).to(dtype)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
    return x, w, b, dict(stride=st, padding=pad, dilation=dil, groups=groups)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_within_twice_torch_error(case, bf16_isa):
    x, w, b, conv = make(case, torch.bfloat16)
    ours = ours_conv_and_grads(conv_ext.conv2d, x, w, b, **conv)
    assert all(t.dtype == torch.bfloat16 for t in (ours[0], *ours[1]))
    low_precision_tolerance(x, w, b, ours, conv)


def passes(x, w, b, conv, gy):
    conf = (list(conv["stride"] if isinstance(conv["stride"], tuple) else (conv["stride"],) * 2),
            [conv["padding"]] * 2, [conv["dilation"]] * 2, conv["groups"])
    y = ops.conv2d_forward(x, w, b, *conf)
    gx = ops.conv2d_backward_input(gy, w, list(x.shape), *conf)
    gw = ops.conv2d_backward_weight(gy, x, list(w.shape), *conf)
    return y, gx, gw


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_exact_on_integers(case, bf16_isa):
    """Values in {-1, 0, 1}: every product and partial sum is an integer
    below 2^8, exact in float32 and in the bfloat16 result, so the three
    passes must equal the float64 reference bit for bit. Scratch buffers
    are first filled by a call on other data, so a padding step that is not
    zeroed reads garbage."""
    x0, w0, b0, conv = make(case, torch.bfloat16, generator_seed=5)
    x, w, b, _ = make(case, torch.bfloat16, generator_seed=1, integers=True)
    gy_shape = F.conv2d(x.float(), w.float(), None, **conv).shape
    g = torch.Generator().manual_seed(2)
    gy = torch.randint(-1, 2, gy_shape, generator=g).to(torch.bfloat16)
    passes(x0 * 1e3, w0 * 1e3, b0, conv, gy * 7.5e2)  # leaves large values behind
    y, gx, gw = passes(x, w, b, conv, gy)
    xd, wd, gyd = x.double().requires_grad_(), w.double().requires_grad_(), gy.double()
    yd = F.conv2d(xd, wd, b.double(), **conv)
    gxd, gwd = torch.autograd.grad(yd, (xd, wd), gyd)
    assert yd.abs().max() < 256 and gxd.abs().max() < 256 and gwd.abs().max() < 256
    for name, ours, ref in (("output", y, yd), ("grad_input", gx, gxd), ("grad_weight", gw, gwd)):
        assert torch.equal(ours.double(), ref), name


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[9], CASES[10]],
                         ids=[IDS[0], IDS[2], IDS[9], IDS[10]])
def test_bias_and_activation(case, activation, bf16_isa):
    """The bias and the activation are applied in float before the one
    rounding to bfloat16: within twice the error of torch's conv + activation
    in bfloat16 (which rounds twice)."""
    x, w, b, conv = make(case, torch.bfloat16)
    acts = {"relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.2),
            "sigmoid": torch.sigmoid, "tanh": torch.tanh}
    act = acts[activation]
    ours = conv_ext.conv2d(x, w, b, **conv, activation=activation, negative_slope=0.2)
    ref = act(F.conv2d(x.double(), w.double(), b.double(), **conv))
    theirs = act(F.conv2d(x, w, b, **conv))
    torch_err = (theirs.double() - ref).abs().max().item()
    our_err = (ours.double() - ref).abs().max().item()
    eps = torch.finfo(torch.bfloat16).eps
    assert ours.dtype == torch.bfloat16
    assert our_err <= 2 * torch_err + 4 * eps * ref.abs().max().item()


def test_pair_kernel_matches_its_scalar_reference(monkeypatch):
    """On a CPU with AVX-512 BF16, "auto" runs vdpbf16ps on the pair panels
    and "scalar" the reference of the same panels and summation order: the
    results agree bit for bit."""
    if not has_avx512_bf16():
        pytest.skip("needs AVX-512 BF16")
    x, w, b, conv = make(CASES[1], torch.bfloat16)
    gy = torch.randn(F.conv2d(x.float(), w.float(), None, **conv).shape,
                     generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    results = {}
    for isa in ("auto", "scalar"):
        monkeypatch.setenv("CONV_EXT_CPU_ISA", isa)
        results[isa] = passes(x, w, b, conv, gy)
    for name, a, s in zip(["output", "grad_input", "grad_weight"], *results.values()):
        assert torch.equal(a, s), name


def test_summation_order_shows_the_kernel(bf16_isa):
    """Which kernel ran, seen in the result. Products p0..p3 = 1, 2^-24, -1,
    2^-24 along the depth (a 1 x 1 layer, 4 channels, one pixel). The float
    kernels sum in depth order: ((1 + 2^-24) - 1) + 2^-24 = 2^-24 (the first
    2^-24 is lost to rounding). The pair kernels add each pair's second
    product first: ((2^-24 + 1) + 2^-24) - 1 = 0. So the pair kernels run
    exactly on "scalar" and, with AVX-512 BF16, on "auto"."""
    t = 2.0 ** -12
    x = torch.tensor([1.0, t, -1.0, t]).view(1, 4, 1, 1).bfloat16()
    w = torch.tensor([1.0, t, 1.0, t]).repeat(9, 1).view(9, 4, 1, 1).bfloat16()  # 9: the GEMM
    y = conv_ext.conv2d(x, w)
    pairs = bf16_isa == "scalar" or (bf16_isa == "auto" and has_avx512_bf16())
    assert torch.equal(y, torch.full_like(y, 0.0 if pairs else 2.0 ** -24))


@pytest.mark.parametrize("case", [CASES[0], CASES[2]], ids=[IDS[0], IDS[2]])
def test_batch_zero(case, bf16_isa):
    x, w, b, conv = make(case, torch.bfloat16)
    x = x[:0]
    y = conv_ext.conv2d(x, w, b, **conv)
    assert y.shape[0] == 0 and y.dtype == torch.bfloat16
    gy = torch.zeros_like(y)
    conf = ([conv["stride"]] * 2, [conv["padding"]] * 2, [conv["dilation"]] * 2, conv["groups"])
    gw = ops.conv2d_backward_weight(gy, x, list(w.shape), *conf)
    assert torch.equal(gw, torch.zeros_like(w))
    gx = ops.conv2d_backward_input(gy, w, list(x.shape), *conf)
    assert gx.shape == x.shape


def test_avx512_level_widens_to_float(monkeypatch):
    """CONV_EXT_CPU_ISA=avx512 caps at AVX-512F: bfloat16 is widened to float
    while packing and runs the float kernel, so on a layer whose float32
    forward takes the same GEMM (11 channels: no Winograd; one depth block)
    the result is the float32 result of the same values, rounded once."""
    x, w, b, conv = make(CASES[0], torch.bfloat16)
    monkeypatch.setenv("CONV_EXT_CPU_ISA", "avx512")
    y = conv_ext.conv2d(x, w, b, **conv)
    y32 = conv_ext.conv2d(x.float(), w.float(), b.float(), **conv)
    assert torch.equal(y, y32.bfloat16())
