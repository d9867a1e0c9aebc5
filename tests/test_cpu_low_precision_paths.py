"""bfloat16 and float16 on the CPU paths that compute in float32 after
widening their copies (csrc/cpu/heuristic.h, float_arithmetic): Winograd
F(2x2, 3x3), the window / phase-plane paths and the blocked depthwise and
grouped kernels. Every pass of every case, on every instruction set,
against a float64 reference within twice torch's own error in that dtype
(tests/reference.py); and, through the names the paths give themselves in
torch.profiler's trace, that each pass really runs the path meant for it
(results that differ from the packed GEMM's only in rounding would not
tell)."""
import pytest
import torch
import torch.nn.functional as F

import conv_ext
from reference import has_avx512_bf16, low_precision_tolerance, ours_conv_and_grads, runs_avx512

ops = torch.ops.conv_ext

LOW = [torch.bfloat16, torch.float16]

WINO = ("conv_ext::cpu::winograd_correlate",) * 2 + ("conv_ext::cpu::winograd_weight_grad",)
WIN_FWD, WIN_DX, WIN_DW = (f"conv_ext::cpu::window_{p}" for p in
                           ("forward", "backward_input", "backward_weight"))
DW = tuple(f"conv_ext::cpu::depthwise_blocked_{p}" for p in ("forward", "backward_input", "backward_weight"))
GRP = tuple(f"conv_ext::cpu::grouped_blocked_{p}" for p in ("forward", "backward_input", "backward_weight"))

# (name, N, C, H, W, K, R, S, stride, pad, dil, groups, channels_last,
#  the path each pass takes (forward, grad input, grad weight; None: another
#  path), whether the path needs vector instructions)
CASES = [
    # Winograd: odd sizes (half tiles), no padding, padding 3 (the grad
    # input's is then -1), several blocks of tiles, output channels split
    # across threads, dilations 2 and 3 (phase sub-grids)
    ("winograd_odd", 2, 20, 13, 17, 24, 3, 3, 1, 1, 1, 1, False, WINO, True),
    ("winograd_pad0", 4, 16, 9, 10, 18, 3, 3, 1, 0, 1, 1, False, WINO, True),
    ("winograd_pad3", 3, 17, 10, 9, 16, 3, 3, 1, 3, 1, 1, False, WINO, True),
    # (its grad weight: enough padded pixels for the window dot products)
    ("winograd_blocks", 2, 16, 41, 38, 33, 3, 3, 1, 2, 1, 1, False, WINO[:2] + (WIN_DW,), True),
    ("winograd_parts", 4, 32, 7, 7, 40, 3, 3, 1, 1, 1, 1, False, WINO, True),
    ("winograd_dilated", 2, 16, 12, 18, 20, 3, 3, 1, 2, 2, 1, False, WINO, True),
    ("winograd_dilated3", 3, 16, 9, 15, 24, 3, 3, 1, 3, 3, 1, False, WINO, True),
    # phase planes: 7 x 7 stride 2 (ResNet's stem), stride 2 with dilation 2,
    # 3 x 3 stride 2 with odd sizes; grad weight by window dot products
    ("window_stride2", 4, 3, 40, 44, 9, 7, 7, 2, 3, 1, 1, False, (WIN_FWD, WIN_DX, WIN_DW), True),
    ("window_stride2_dil", 8, 8, 33, 30, 12, 3, 3, 2, 1, 2, 1, False, (WIN_FWD, WIN_DX, WIN_DW), True),
    # (its forward: 3 x 3 on 16-127 channels takes the GEMM)
    ("window_stride2_odd", 2, 24, 21, 19, 20, 3, 3, 2, 1, 1, 1, False, (None, WIN_DX, None), True),
    ("window_dilated", 2, 18, 30, 33, 20, 5, 5, 1, 3, 2, 1, False, (None, None, WIN_DW), True),
    ("window_1x1", 4, 24, 20, 30, 40, 1, 1, 1, 0, 1, 1, False, (None, None, WIN_DW), True),
    # blocked depthwise: whole blocks (the transposing window copy), one
    # block and a partial one, strides 2 (also per dimension), 5 x 5, 7 x 7,
    # dilation
    ("dw_blocks_4x4", 8, 48, 4, 4, 48, 3, 3, 1, 1, 1, 48, False, DW, False),
    ("dw_partial_7x7", 2, 20, 7, 7, 20, 3, 3, 1, 1, 1, 20, False, DW, False),
    ("dw_stride2_odd", 2, 16, 9, 11, 16, 3, 3, 2, 1, 1, 16, False, DW, False),
    ("dw_stride2_nopad", 2, 17, 10, 9, 17, 3, 3, 2, 0, 1, 17, False, DW, False),
    ("dw_5x5_stride2", 2, 20, 13, 15, 20, 5, 5, 2, 2, 1, 20, False, DW, False),
    ("dw_7x7", 1, 16, 12, 12, 16, 7, 7, 1, 3, 1, 16, False, DW, False),
    ("dw_dilated", 2, 16, 11, 9, 16, 3, 3, 1, 2, 2, 16, False, DW, False),
    # 3 x 3 stride 1 on planes wider than a vector: float32 keeps the plane
    # kernels there, low precision takes the blocks
    ("dw_wide_plane", 2, 24, 19, 37, 24, 3, 3, 1, 1, 1, 24, False, DW, False),
    # blocked grouped: 16 per group (RegNet), stride 2, 10 per group (a
    # partial vector of destinations), channels_last (read through strides)
    ("grouped16", 2, 64, 7, 7, 64, 3, 3, 1, 1, 1, 4, False, GRP, False),
    ("grouped16_stride2", 2, 48, 13, 11, 48, 3, 3, 2, 1, 1, 3, False, GRP, False),
    ("grouped10", 2, 40, 9, 9, 40, 3, 3, 1, 1, 1, 4, False, GRP, False),
    ("grouped16_nhwc", 2, 64, 8, 9, 64, 3, 3, 1, 1, 1, 4, True, GRP, False),
    ("grouped16_nhwc_s2", 2, 32, 11, 10, 32, 3, 3, 2, 1, 1, 2, True, GRP, False),
]
IDS = [c[0] for c in CASES]


@pytest.fixture
def isa(bf16_isa):
    """conftest's bfloat16 levels: where the CPU has AVX-512 BF16, "auto"
    runs bfloat16 on the pair GEMM instead of some of these paths
    (pairs_take_over), and "avx512" still reaches them."""
    return bf16_isa


def pairs_take_over(path, case, dtype, isa):
    """bfloat16 where the pair micro-kernel runs keeps to the packed GEMM
    instead of Winograd, the phase-plane forward and, past a stem's C*R*S
    <= 256 taps, the window-dot grad weight (heuristic.h,
    pairs_over_float_paths)."""
    if dtype != torch.bfloat16 or isa != "auto" or not has_avx512_bf16():
        return False
    taps = case[2] * case[6] * case[7]
    return path in WINO or path == WIN_FWD or (path == WIN_DW and taps > 256)


def make(case, dtype, seed=0):
    _, n, c, h, w, k, r, s, st, pd, dl, g, cl = case[:13]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen).to(dtype)
    wt = torch.randn(k, c // g, r, s, generator=gen).to(dtype)
    b = torch.randn(k, generator=gen).to(dtype)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
        wt = wt.contiguous(memory_format=torch.channels_last)
    return x, wt, b, dict(stride=st, padding=pd, dilation=dl, groups=g)


def traced(fn):
    """The conv_ext CPU paths fn ran, by their profiler names."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.name for e in prof.events() if e.name.startswith("conv_ext::cpu::")}


def pass_calls(x, w, b, kw, gy):
    a = ([kw["stride"]] * 2, [kw["padding"]] * 2, [kw["dilation"]] * 2, kw["groups"])
    return [
        lambda: ops.conv2d_forward(x, w, b, *a),
        lambda: ops.conv2d_backward_input(gy, w, list(x.shape), *a),
        lambda: ops.conv2d_backward_weight(gy, x, list(w.shape), *a),
    ]


@pytest.mark.parametrize("dtype", LOW, ids=["bfloat16", "float16"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_low_precision_paths_match_float64(case, dtype, isa):
    x, w, b, kw = make(case, dtype)
    ours = ours_conv_and_grads(conv_ext.conv2d, x, w, b, **kw)
    assert all(t.dtype == dtype for t in (ours[0], *ours[1]))
    low_precision_tolerance(x, w, b, ours, kw)


@pytest.mark.parametrize("dtype", LOW, ids=["bfloat16", "float16"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_low_precision_paths_are_taken(case, dtype, isa):
    """Each pass runs its path (and only a pass meant for it does); the
    Winograd and window paths need vector instructions, so the scalar level
    takes the packed GEMM there, and the grad input per input phase and
    the window-dot grad weight of 1 x 1 kernels run at the AVX-512 level
    only (heuristic.h)."""
    x, w, b, kw = make(case, dtype)
    gy = torch.randn(F.conv2d(x.float(), w.float(), None, **kw).shape,
                     generator=torch.Generator().manual_seed(1)).to(dtype)
    expected, vector_only = case[13], case[14]
    names = set(WINO) | {WIN_FWD, WIN_DX, WIN_DW} | set(DW) | set(GRP)
    for name, call, path in zip(("forward", "grad input", "grad weight"), pass_calls(x, w, b, kw, gy), expected):
        ran = traced(call) & names
        if path is None:
            continue
        avx512_only = path == WIN_DX or (path == WIN_DW and case[6] * case[7] == 1)
        below_avx512 = avx512_only and not runs_avx512(isa)
        if (vector_only and isa == "scalar") or below_avx512 or pairs_take_over(path, case, dtype, isa):
            assert path not in ran, f"{name}: {ran}"
        else:
            assert path in ran, f"{name}: {ran}"


@pytest.mark.parametrize("dtype", LOW, ids=["bfloat16", "float16"])
def test_low_precision_paths_fuse_activations(dtype, monkeypatch):
    """The fused activation on the Winograd, phase-plane and blocked
    outputs, applied to the rounded results as on the widening GEMM path
    (below AVX-512 BF16, so that bfloat16 takes these paths; the pair GEMM
    applies it before its one rounding, tests/test_cpu_bf16.py)."""
    monkeypatch.setenv("CONV_EXT_CPU_ISA", "avx512")
    for case in (CASES[0], CASES[7], CASES[12], CASES[19]):
        x, w, b, kw = make(case, dtype)
        a = ([kw["stride"]] * 2, [kw["padding"]] * 2, [kw["dilation"]] * 2, kw["groups"])
        plain = ops.conv2d_forward(x, w, b, *a)
        for act, f, tol in (("relu", F.relu, 0), ("leaky_relu", lambda t: F.leaky_relu(t, 0.1), 0),
                            ("sigmoid", torch.sigmoid, torch.finfo(dtype).eps)):
            fused = ops.conv2d_forward_activation(x, w, b, *a, act, 0.1)
            assert fused.dtype == dtype
            torch.testing.assert_close(fused.float(), f(plain.float()).to(dtype).float(), rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", LOW, ids=["bfloat16", "float16"])
def test_low_precision_results_do_not_depend_on_the_thread_count(dtype):
    for case in (CASES[3], CASES[8], CASES[16], CASES[20]):
        x, w, b, kw = make(case, dtype)
        gy = torch.randn(F.conv2d(x.float(), w.float(), None, **kw).shape,
                         generator=torch.Generator().manual_seed(1)).to(dtype)
        before = torch.get_num_threads()
        outs = []
        try:
            for threads in (1, 2):
                torch.set_num_threads(threads)
                outs.append([call() for call in pass_calls(x, w, b, kw, gy)])
        finally:
            torch.set_num_threads(before)
        for one, two in zip(*outs):
            assert torch.equal(one, two), case[0]


def test_bfloat16_blocked_reads_strided_views(isa):
    """Transposed planes and a channel slice in bfloat16: the window copies
    widen element by element through any strides."""
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(3, 40, 9, 7, generator=gen).to(torch.bfloat16)
    x = base[:, 4:36].transpose(2, 3)  # (3, 32, 7, 9), column stride 7
    w = torch.randn(32, 1, 3, 3, generator=gen).to(torch.bfloat16)
    kw = dict(stride=2, padding=1, dilation=1, groups=32)
    assert x.stride(3) != 1
    low_precision_tolerance(x, w, None, ours_conv_and_grads(conv_ext.conv2d, x, w, None, **kw), kw)
    wg = torch.randn(32, 8, 3, 3, generator=gen).to(torch.bfloat16)
    kw = dict(stride=1, padding=1, dilation=1, groups=4)
    low_precision_tolerance(x, wg, None, ours_conv_and_grads(conv_ext.conv2d, x, wg, None, **kw), kw)


@pytest.mark.parametrize("level", ["auto", "avx512"])
def test_autocast_bfloat16_layer_takes_winograd(level, monkeypatch):
    """Under torch.autocast("cpu") a float32 MyConv2d's 3 x 3 layer runs in
    bfloat16 through Winograd, forward and backward, unless the bfloat16
    pair GEMM runs (AVX-512 BF16 at "auto")."""
    monkeypatch.setenv("CONV_EXT_CPU_ISA", level)
    torch.manual_seed(0)
    layer = conv_ext.MyConv2d(32, 32, 3, padding=1)
    x = torch.randn(4, 32, 16, 16, requires_grad=True)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(x)
        assert y.dtype == torch.bfloat16
        y.float().square().sum().backward()

    ran = traced(step)
    wino = {"conv_ext::cpu::winograd_correlate", "conv_ext::cpu::winograd_weight_grad"}
    if level == "auto" and has_avx512_bf16():
        assert not wino & ran, ran
    else:
        assert wino <= ran, ran
    assert layer.weight.grad.dtype == torch.float32 and x.grad.dtype == torch.float32


# Cases whose float32 layer takes another path than its low-precision one.
OTHER_FLOAT32_PATH = {"dw_wide_plane"}  # float32: the plane kernels


@pytest.mark.parametrize("dtype", LOW, ids=["bfloat16", "float16"])
@pytest.mark.parametrize("case", [c for c in CASES if c[0] not in OTHER_FLOAT32_PATH],
                         ids=[c[0] for c in CASES if c[0] not in OTHER_FLOAT32_PATH])
def test_low_precision_is_the_float32_path_rounded_once(case, dtype, isa):
    """The same path in float32 on the widened operands, rounded to the
    dtype once, gives every result bit for bit: the widening copies and the
    rounding stores (vectorized on AVX-512, nearest even) add no error of
    their own. Infinities and NaNs in the input carry through alike."""
    x, w, b, kw = make(case, dtype)
    fmt = torch.channels_last if case[12] else torch.contiguous_format
    flat = x.contiguous().view(-1).clone()
    n = flat.numel()
    flat[[n // 5, n // 2, 4 * n // 5]] = torch.tensor([float("inf"), float("nan"), -float("inf")]).to(dtype)
    x = flat.view(x.shape).contiguous(memory_format=fmt)
    gy = torch.randn(F.conv2d(x.float(), w.float(), None, **kw).shape,
                     generator=torch.Generator().manual_seed(1)).to(dtype)
    low = [call() for call in pass_calls(x, w, b, kw, gy)]
    wide_calls = pass_calls(x.float(), w.float(), b.float(), kw, gy.float())
    wide = [call().to(dtype) for call in wide_calls]
    expected, vector_only = case[13], case[14]
    for name, lo, hi, path, wide_call in zip(("forward", "grad input", "grad weight"), low, wide, expected,
                                             wide_calls):
        assert lo.dtype == dtype, name
        # Only where both dtypes take the path: the packed GEMM keeps
        # bfloat16 in its panels where it can, and float32 has paths of its
        # own (grad input over the batch), which sum in other orders.
        if (path is None or (vector_only and isa == "scalar") or pairs_take_over(path, case, dtype, isa)
                or path not in traced(wide_call)):
            continue
        torch.testing.assert_close(lo, hi, rtol=0, atol=0, equal_nan=True, msg=name)
