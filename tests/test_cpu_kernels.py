"""The CPU kernels path by path (csrc/cpu/heuristic.h picks them), on every
instruction set the machine has plus the portable scalar one, against
torch.nn.functional.conv2d: float64 to tight tolerances, gradcheck, low
precision within twice torch's own error, bitwise determinism, batch 0.

CONV_EXT_CPU_ISA (read on every call) selects the instruction set:
"scalar" forces the portable kernels, "avx2" caps at AVX2 + FMA, unset or
"auto" takes the best the CPU has."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import conv_ext
from reference import runs_avx512

ops = torch.ops.conv_ext


# (name, N, C, H, W, K, R, S, stride, pad, dil, groups, channels_last): each
# row drives one path of heuristic.h, sized so the vector blocks, several
# pixel tiles (192 pixels), several depth blocks (256 taps) and several
# grad-weight work items (256 pixels) all occur.
PATHS = [
    # packed GEMM, channels-major (NCHW), 3 depth blocks of taps (12 output
    # channels: too few for Winograd)
    ("gemm_nchw", 2, 40, 17, 23, 12, 3, 3, 1, 1, 1, 1, False),
    # Winograd F(2x2, 3x3), float32 NCHW 3 x 3 stride 1 with >= 16 channels
    # each side (bfloat16 and half: tests/test_cpu_low_precision_paths.py;
    # float64 takes the GEMM): odd output sizes (a half
    # tile on the right and bottom), no padding, padding 3 (the grad input's
    # is then -1), and enough tiles for several blocks and a partial panel;
    # each case has the >= 64 tiles Winograd asks for in both passes
    ("winograd_odd", 2, 20, 13, 17, 24, 3, 3, 1, 1, 1, 1, False),
    ("winograd_pad0", 4, 16, 9, 10, 18, 3, 3, 1, 0, 1, 1, False),
    ("winograd_pad3", 3, 17, 10, 9, 16, 3, 3, 1, 3, 1, 1, False),
    ("winograd_blocks", 2, 16, 41, 38, 33, 3, 3, 1, 2, 1, 1, False),
    # dilated: d^2 undilated problems on the phase sub-grids
    ("winograd_dilated", 2, 16, 12, 18, 20, 3, 3, 1, 2, 2, 1, False),
    ("winograd_dilated3", 3, 16, 9, 15, 24, 3, 3, 1, 3, 3, 1, False),
    # one block of tiles (7 x 7 images, 64 tiles) whose output channels two
    # threads split
    ("winograd_parts", 4, 32, 7, 7, 40, 3, 3, 1, 1, 1, 1, False),
    # grad weight by window dot products (float32 stride 1, >= 2048 padded
    # pixels in the batch): dilated 5 x 5, and 1 x 1 (no padding at all)
    ("window_dilated", 2, 18, 30, 33, 20, 5, 5, 1, 3, 2, 1, False),
    ("window_1x1", 4, 24, 20, 30, 40, 1, 1, 1, 0, 1, 1, False),
    # strides through phase planes: 7 x 7 stride 2 (as ResNet's first
    # layer), and stride 2 with dilation 2
    ("window_stride2", 4, 3, 40, 44, 16, 7, 7, 2, 3, 1, 1, False),
    ("window_stride2_dil", 8, 8, 33, 30, 12, 3, 3, 2, 1, 2, 1, False),
    # packed GEMM, pixels-major with (r, s, c) taps (channels_last)
    ("gemm_nhwc", 2, 24, 15, 21, 18, 3, 3, 1, 1, 1, 1, True),
    # pixels-major chosen for few pixels per image (7 x 7)
    ("gemm_few_pixels", 3, 48, 7, 7, 40, 3, 3, 1, 1, 1, 1, False),
    # few pixels, many channels: output channels split across threads, all
    # images' pixels in one GEMM (forward and grad input)
    ("few_pixels", 2, 160, 5, 6, 140, 3, 3, 1, 1, 1, 1, False),
    ("few_pixels_nhwc", 2, 130, 4, 5, 136, 3, 3, 1, 1, 1, 1, True),
    # the same at stride 2 (grad input: one GEMM over all images' pixels,
    # col2im-added), with dilation, and on planes of one pixel
    # (squeeze-excite); 1 x 1 on 4 x 4 planes with too few taps to split
    # the grad weight's taps between threads (its output channels are)
    ("few_pixels_stride2", 8, 40, 7, 7, 64, 3, 3, 2, 1, 1, 1, False),
    ("few_pixels_s2_dil", 3, 20, 9, 8, 24, 3, 3, 2, 2, 2, 1, False),
    ("few_pixels_1x1_plane", 8, 48, 1, 1, 160, 1, 1, 1, 0, 1, 1, False),
    ("few_pixels_pointwise", 8, 160, 4, 4, 200, 1, 1, 1, 0, 1, 1, False),
    # 1 x 1 grad input with W^T in panels and grad_output in place
    # (pointwise_grad_input_by_rows): input channels that fill no whole
    # panel, two depth blocks (300 = 256 + 44), 392 pixels (past the
    # gather's 384 rows), and channels-last
    ("pointwise_gi_panels", 8, 131, 7, 7, 300, 1, 1, 1, 0, 1, 1, False),
    ("pointwise_gi_panels_nhwc", 4, 70, 5, 5, 90, 1, 1, 1, 0, 1, 1, True),
    # strided grad input over the batch in blocks of 384 pixels, one block
    # boundary in the middle of an image's row; 1 x 1 stride 2 (ResNet's
    # downsampling shortcut)
    ("col2im_batch_blocks", 3, 20, 29, 27, 24, 3, 3, 2, 1, 1, 1, False),
    ("col2im_batch_1x1_s2", 2, 24, 15, 17, 40, 1, 1, 2, 0, 1, 1, False),
    # 1 x 1, no im2col gather beyond runs
    ("pointwise", 2, 32, 13, 19, 48, 1, 1, 1, 0, 1, 1, False),
    # 1 x 1 grad weight with grad_output's planes read in place: two depth
    # blocks per image (323 pixels: 256 + 67), output channels and input
    # channels that fill no whole tile
    ("pointwise_rows", 3, 20, 17, 19, 27, 1, 1, 1, 0, 1, 1, False),
    # stride 2: grad input through col2im
    ("col2im_stride2", 2, 3, 29, 31, 20, 7, 7, 2, 3, 1, 1, False),
    ("col2im_nhwc", 2, 12, 16, 16, 20, 3, 3, 2, 1, 1, 1, True),
    # dilation with a gathered grad input
    ("dilated", 1, 20, 18, 18, 24, 3, 3, 1, 2, 2, 1, False),
    # groups with more than 8 channels per group: GEMM per group
    ("gemm_groups", 2, 24, 11, 13, 36, 3, 3, 1, 1, 1, 2, False),
    # direct: depthwise, grouped (4 per group), a few channels without groups
    ("depthwise", 2, 12, 37, 41, 12, 3, 3, 1, 1, 1, 12, False),
    ("depthwise_nhwc", 2, 8, 20, 33, 8, 3, 3, 1, 1, 1, 8, True),
    ("depthwise_mult2", 1, 6, 19, 35, 12, 5, 5, 1, 2, 1, 6, False),
    ("grouped4", 2, 16, 28, 28, 16, 3, 3, 1, 1, 1, 4, False),
    ("direct_stride2", 2, 8, 23, 37, 8, 3, 3, 2, 1, 1, 8, False),
    ("direct_dilated", 1, 8, 30, 30, 16, 3, 3, 1, 2, 2, 8, False),
    ("direct_few_channels", 1, 1, 40, 50, 4, 3, 3, 1, 0, 1, 1, False),
    # the direct/GEMM threshold: 8 channels per group direct, 9 not
    ("threshold_direct", 1, 16, 12, 20, 16, 3, 3, 1, 1, 1, 2, False),
    ("threshold_gemm", 1, 18, 12, 20, 18, 3, 3, 1, 1, 1, 2, False),
]
IDS = [p[0] for p in PATHS]


def make(case, dtype, seed=0):
    _, n, c, h, w, k, r, s, st, pd, dl, g, cl = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    wt = torch.randn(k, c // g, r, s, generator=gen, dtype=torch.float64)
    b = torch.randn(k, generator=gen, dtype=torch.float64)
    x, wt, b = x.to(dtype), wt.to(dtype), b.to(dtype)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, wt, b, dict(stride=st, padding=pd, dilation=dl, groups=g)


def conf(kw):
    st, pd, dl = kw["stride"], kw["padding"], kw["dilation"]
    return [st, st], [pd, pd], [dl, dl], kw["groups"]


def passes(x, w, b, kw, gy):
    """Our four ops, called directly."""
    a = conf(kw)
    y = ops.conv2d_forward(x, w, b, *a)
    gx = ops.conv2d_backward_input(gy, w, list(x.shape), *a)
    gw = ops.conv2d_backward_weight(gy, x, list(w.shape), *a)
    gb = ops.conv2d_backward_bias(gy)
    return y, gx, gw, gb


def reference(x, w, b, kw, gy):
    xr, wr, br = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y = F.conv2d(xr, wr, br, **kw)
    return (y.detach(), *torch.autograd.grad(y, (xr, wr, br), gy))


@pytest.mark.parametrize("case", PATHS, ids=IDS)
def test_float64_matches_torch(case, isa):
    x, w, b, kw = make(case, torch.float64)
    gy = torch.randn(F.conv2d(x, w, b, **kw).shape, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(1))
    if case[-1]:
        gy = gy.contiguous(memory_format=torch.channels_last)
    for name, ours, ref in zip(["output", "grad_input", "grad_weight", "grad_bias"],
                               passes(x, w, b, kw, gy), reference(x, w, b, kw, gy)):
        torch.testing.assert_close(ours, ref, rtol=1e-11, atol=1e-11, msg=name)


@pytest.mark.parametrize("case", PATHS, ids=IDS)
def test_float32_matches_torch(case, isa):
    x, w, b, kw = make(case, torch.float32)
    gy = torch.randn(F.conv2d(x, w, b, **kw).shape, generator=torch.Generator().manual_seed(1))
    ref64 = reference(x.double(), w.double(), b.double(), kw, gy.double())
    for name, ours, ref in zip(["output", "grad_input", "grad_weight", "grad_bias"],
                               passes(x, w, b, kw, gy), ref64):
        scale = ref.abs().max().item()
        assert (ours.double() - ref).abs().max().item() <= 1e-5 * max(1.0, scale), name


LOW_PRECISION = ("gemm_nchw", "gemm_nhwc", "few_pixels", "few_pixels_stride2", "col2im_stride2",
                 "depthwise", "grouped4")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", [p for p in PATHS if p[0] in LOW_PRECISION],
                         ids=[p[0] for p in PATHS if p[0] in LOW_PRECISION])
def test_low_precision_within_twice_torch_error(case, dtype, isa):
    x, w, b, kw = make(case, dtype)
    gy = torch.randn(F.conv2d(x.double(), w.double(), b.double(), **kw).shape,
                     generator=torch.Generator().manual_seed(1)).to(dtype)
    ref64 = reference(x.double(), w.double(), b.double(), kw, gy.double())
    theirs = reference(x, w, b, kw, gy)
    eps = torch.finfo(dtype).eps
    for name, ours, t, r in zip(["output", "grad_input", "grad_weight", "grad_bias"],
                                passes(x, w, b, kw, gy), theirs, ref64):
        assert ours.dtype == dtype
        torch_err = (t.double() - r).abs().max().item()
        our_err = (ours.double() - r).abs().max().item()
        assert our_err <= 2 * torch_err + 4 * eps * r.abs().max().item(), name


SMALL = [
    ("gemm", 2, 5, 6, 7, 4, 3, 3, 1, 1, 1, 1, False),
    ("gemm_nhwc_stride2", 2, 4, 7, 6, 5, 3, 2, 2, 1, 1, 1, True),
    ("direct", 1, 4, 7, 18, 4, 3, 3, 1, 1, 1, 4, False),
    ("direct_stride2", 1, 4, 8, 9, 8, 3, 3, 2, 1, 2, 4, False),
]


@pytest.mark.parametrize("case", SMALL, ids=[p[0] for p in SMALL])
def test_gradcheck(case, isa):
    x, w, b, kw = make(case, torch.float64)
    x.requires_grad_(), w.requires_grad_(), b.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w, b: conv_ext.conv2d(x, w, b, **kw), (x, w, b))


DETERMINISM = ["gemm_nchw", "winograd_blocks", "gemm_nhwc", "col2im_stride2", "depthwise", "grouped4",
               "pointwise_rows"]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", [p for p in PATHS if p[0] in DETERMINISM],
                         ids=[p[0] for p in PATHS if p[0] in DETERMINISM])
def test_bitwise_deterministic(case, threads, isa):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, w, b, kw = make(case, torch.float32)
        gy = torch.randn(F.conv2d(x, w, b, **kw).shape, generator=torch.Generator().manual_seed(1))
        first = passes(x, w, b, kw, gy)
        for _ in range(3):
            for a, c in zip(first, passes(x, w, b, kw, gy)):
                assert torch.equal(a, c)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bias_sum_every_run_length(dtype, isa):
    """Grad bias sums each channel's plane in vectors (conv2d_backward_bias.cpp):
    planes of 1 to 300 values reach every loop and remainder at every
    vector width, checked against a float64 sum."""
    gen = torch.Generator().manual_seed(3)
    for hw in list(range(1, 70)) + [127, 128, 129, 255, 256, 257, 300]:
        gy = torch.randn(3, 5, 1, hw, generator=gen, dtype=torch.float64)
        ref = gy.sum((0, 2, 3))
        ours = ops.conv2d_backward_bias(gy.to(dtype)).double()
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(ours, ref, rtol=tol, atol=tol, msg=f"{hw} values per plane")


@pytest.mark.parametrize("case", [PATHS[0], PATHS[8]], ids=["gemm", "direct"])
def test_batch_zero(case, isa):
    x, w, b, kw = make(case, torch.float64)
    x = x[:0]
    y = ops.conv2d_forward(x, w, b, *conf(kw))
    assert y.shape[0] == 0
    gy = torch.zeros_like(y)
    gw = ops.conv2d_backward_weight(gy, x, list(w.shape), *conf(kw))
    assert torch.equal(gw, torch.zeros_like(w))
    gx = ops.conv2d_backward_input(gy, w, list(x.shape), *conf(kw))
    assert gx.shape == x.shape


def test_scalar_and_vector_kernels_agree_closely():
    """The instruction sets differ only in rounding order."""
    import os
    x, w, b, kw = make(PATHS[0], torch.float64)
    gy = torch.randn(F.conv2d(x, w, b, **kw).shape, dtype=torch.float64)
    old = os.environ.get("CONV_EXT_CPU_ISA")
    try:
        os.environ["CONV_EXT_CPU_ISA"] = "scalar"
        scalar = passes(x, w, b, kw, gy)
        os.environ["CONV_EXT_CPU_ISA"] = "auto"
        vector = passes(x, w, b, kw, gy)
    finally:
        if old is None:
            os.environ.pop("CONV_EXT_CPU_ISA", None)
        else:
            os.environ["CONV_EXT_CPU_ISA"] = old
    for a, c in zip(scalar, vector):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


# The passes each float32 specialization takes over, per case.
SPECIALIZED = {
    "winograd_odd": ["output", "grad_input", "grad_weight"],
    "winograd_pad0": ["output", "grad_input", "grad_weight"],
    "winograd_pad3": ["output", "grad_input", "grad_weight"],
    "winograd_blocks": ["output", "grad_input", "grad_weight"],
    "winograd_parts": ["output", "grad_input", "grad_weight"],
    "winograd_dilated": ["output", "grad_input", "grad_weight"],
    "winograd_dilated3": ["output", "grad_input", "grad_weight"],
    "window_1x1": ["grad_weight"],
    # forward on phase planes and grad input per input phase: strided
    # float32 NCHW
    "col2im_stride2": ["output", "grad_input"],
    "window_dilated": ["grad_weight"],
    "window_stride2": ["output", "grad_input", "grad_weight"],
    "window_stride2_dil": ["output", "grad_input", "grad_weight"],
    # grad input of few pixels as one GEMM over the batch, col2im-added
    # (else the gather at stride 1, phase planes at stride 2)
    "few_pixels": ["grad_input"],
    "few_pixels_nhwc": ["grad_input"],
    "few_pixels_stride2": ["grad_input"],
    "few_pixels_s2_dil": ["grad_input"],
    "col2im_batch_blocks": ["grad_input"],
    "col2im_batch_1x1_s2": ["grad_input"],
}


# Forward on phase planes whose taps fit one depth block: the same sums in
# the same order as the GEMM.
WINDOW_FORWARD_ONLY_ORDER = {"col2im_stride2", "window_stride2", "window_stride2_dil"}

# Grad input at stride 2 of few pixels: one GEMM over the batch adds the
# same products in the same order as the col2im path per image, which the
# GEMM-only switch selects there (bitwise equal, as it should be).
COL2IM_SAME_ORDER = {"few_pixels_stride2", "few_pixels_s2_dil", "col2im_batch_1x1_s2"}

# Passes whose specialization runs at the AVX-512 level only (heuristic.h):
# the grad input per input phase (use_window_backward_input; below it
# col2im, the path the GEMM-only switch selects too) and the window-dot
# grad weight of 1 x 1 kernels (use_window_weight_grad).
AVX512_ONLY = {("col2im_stride2", "grad_input"), ("window_stride2", "grad_input"),
               ("window_stride2_dil", "grad_input"), ("window_1x1", "grad_weight")}


@pytest.mark.parametrize("case", [p for p in PATHS if p[0] in SPECIALIZED],
                         ids=[p[0] for p in PATHS if p[0] in SPECIALIZED])
@pytest.mark.parametrize("isa_name", ["auto", "avx2"])
def test_float32_specializations_taken_and_agree_with_gemm(case, isa_name, monkeypatch):
    """CONV_EXT_CPU_GEMM_ONLY=1 forces the packed GEMM for the same call: the
    paths round differently (so the switch really changes the path; the
    phase-plane forward sums in the GEMM's order and may match it bitwise)
    and agree to float32 accuracy; single-thread and two-thread runs are
    bitwise equal (blocks of work depend on the thread count, the
    arithmetic of each result does not)."""
    monkeypatch.setenv("CONV_EXT_CPU_ISA", isa_name)
    x, w, b, kw = make(case, torch.float32)
    gy = torch.randn(F.conv2d(x, w, b, **kw).shape, generator=torch.Generator().manual_seed(1))
    names = ["output", "grad_input", "grad_weight"]

    def run():
        return passes(x, w, b, kw, gy)[:3]

    special = run()
    monkeypatch.setenv("CONV_EXT_CPU_GEMM_ONLY", "1")
    gemm = run()
    monkeypatch.delenv("CONV_EXT_CPU_GEMM_ONLY")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = run()
    finally:
        torch.set_num_threads(old)
    specialized = [p for p in SPECIALIZED[case[0]]
                   if runs_avx512(isa_name) or (case[0], p) not in AVX512_ONLY]
    for name, ours, other, one in zip(names, special, gemm, single):
        assert torch.equal(ours, one), name
        if name not in specialized:
            assert torch.equal(ours, other), name
            continue
        if not (name == "output" and case[0] in WINDOW_FORWARD_ONLY_ORDER) and not (
                name == "grad_input" and case[0] in COL2IM_SAME_ORDER):
            assert not torch.equal(ours, other), name
        scale = other.abs().max().item()
        assert (ours - other).abs().max().item() <= 4e-6 * scale, name


def test_window_weight_grad_over_several_chunks():
    """Batches whose padded planes pass 32 MiB are summed chunk by chunk."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 64, 128, 128, generator=gen)
    w = torch.randn(64, 64, 3, 3, generator=gen)
    gy = torch.randn(4, 64, 128, 128, generator=gen)
    ours = ops.conv2d_backward_weight(gy, x, list(w.shape), [1, 1], [1, 1], [1, 1], 1)
    ref = torch.ops.aten.convolution_backward(
        gy.double(), x.double(), w.double(), None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
        [False, True, False])[1]
    assert (ours.double() - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_float32_fast_paths_on_drawn_shapes(data):
    """The float32 specializations (Winograd, window dot products, phase
    planes, few pixels) on shapes drawn to reach them: >= 16 channels, odd
    and even sizes, paddings past the kernel, strides and dilations; all
    three gradients against float64."""
    d = data.draw
    r, s = d(st.sampled_from([1, 3, 3, 3, 5])), d(st.sampled_from([1, 3, 3, 3, 5]))
    stride, dil = d(st.sampled_from([1, 1, 1, 2])), d(st.sampled_from([1, 1, 2, 3]))
    pad = d(st.integers(0, 4))
    n, c, k = d(st.integers(1, 5)), d(st.integers(16, 40)), d(st.integers(16, 140))
    h = d(st.integers(max(1, dil * (r - 1) + 1 - 2 * pad), 30))
    w = d(st.integers(max(1, dil * (s - 1) + 1 - 2 * pad), 30))
    gen = torch.Generator().manual_seed(d(st.integers(0, 1000)))
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    wt = torch.randn(k, c, r, s, generator=gen, dtype=torch.float64)
    b = torch.randn(k, generator=gen, dtype=torch.float64)
    kw = dict(stride=stride, padding=pad, dilation=dil, groups=1)
    gy = torch.randn(F.conv2d(x, wt, b, **kw).shape, generator=gen, dtype=torch.float64)
    ref = reference(x, wt, b, kw, gy)
    ours = passes(x.float(), wt.float(), b.float(), kw, gy.float())
    for name, o, e in zip(["output", "grad_input", "grad_weight", "grad_bias"], ours, ref):
        scale = max(1.0, e.abs().max().item())
        assert (o.double() - e).abs().max().item() <= 2e-5 * scale, name


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("case", [p for p in PATHS if p[0] in (
    "winograd_odd", "winograd_dilated", "col2im_stride2", "few_pixels")],
    ids=["winograd_odd", "winograd_dilated", "col2im_stride2", "few_pixels"])
def test_fused_activation_on_float32_fast_paths(case, act):
    """Each float32 specialization applies the fused activation (Winograd
    while its output tiles are in cache)."""
    x, w, b, kw = make(case, torch.float32)
    a = conf(kw)
    fused = ops.conv2d_forward_activation(x, w, b, *a, act, 0.1)
    f = {"relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.1),
         "sigmoid": torch.sigmoid, "tanh": torch.tanh}[act]
    pre = F.conv2d(x.double(), w.double(), b.double(), **kw)
    # The activations' slopes are at most 1: the float32 error of the sum
    # passes through at most unchanged.
    tol = 2e-6 * max(1.0, pre.abs().max().item())
    assert (fused.double() - f(pre)).abs().max().item() <= tol
