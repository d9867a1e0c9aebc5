"""The CUDA kernels of csrc/cuda/, run on the CPU by the emulator of
tests/cuda_emulator/ (every CUDA thread a fiber, __syncthreads a barrier),
against torch.nn.functional.conv2d. This is how the device code is tested on
machines without a GPU; tests/test_cuda.py runs the same checks on a real
GPU. The module is compiled on first use (about a minute). Set
CONV_EXT_SKIP_EMULATION=1 to skip these tests.

CONV_EXT_EMULATOR_ASAN=1 builds the module with AddressSanitizer, which then
reports any read or write outside a tensor's allocation; the Python process
needs the runtime preloaded:

    CONV_EXT_EMULATOR_ASAN=1 ASAN_OPTIONS=detect_leaks=0 \
    LD_PRELOAD=$(g++ -print-file-name=libasan.so) python -m pytest tests/test_cuda_emulated.py
"""
import functools
import os

import pytest
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRECT, GEMM_SMALL, GEMM_LARGE, TENSOR_SMALL, TENSOR_LARGE = 0, 1, 2, 3, 4
ALGOS = [DIRECT, GEMM_SMALL, GEMM_LARGE]  # exact in every dtype
TENSOR_OPS = [TENSOR_SMALL, TENSOR_LARGE]  # TF32 for float, no float64


@functools.lru_cache(maxsize=None)
def emulated():
    from torch.utils.cpp_extension import load

    asan = os.environ.get("CONV_EXT_EMULATOR_ASAN") == "1"
    sanitize = ["-g", "-fsanitize=address", "-fno-omit-frame-pointer"] if asan else []
    return load(
        name="conv_ext_cuda_emulated" + ("_asan" if asan else ""),
        sources=[
            os.path.join(ROOT, "tests", "cuda_emulator", "emulated_ops.cpp"),
            os.path.join(ROOT, "csrc", "conv_shape.cpp"),
            os.path.join(ROOT, "csrc", "activation.cpp"),
        ],
        extra_include_paths=[os.path.join(ROOT, "csrc"), os.path.join(ROOT, "tests", "cuda_emulator")],
        extra_cflags=["-O1", "-Wno-unknown-pragmas", *sanitize],
        extra_ldflags=["-fsanitize=address"] if asan else [],
    )


pytestmark = pytest.mark.skipif(
    os.environ.get("CONV_EXT_SKIP_EMULATION") == "1", reason="CONV_EXT_SKIP_EMULATION=1")

# (N, C, H, W, K, R, S, stride, padding, dilation, groups): every hyper-parameter
# away from its default somewhere, uneven sizes, tiles cut at every edge.
SHAPES = [
    (2, 4, 9, 8, 5, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (2, 6, 11, 9, 6, 3, 2, (2, 1), (1, 0), (2, 1), 3),
    (1, 3, 13, 11, 20, 5, 3, (2, 3), (2, 1), (1, 2), 1),
    (3, 18, 7, 6, 17, 1, 1, (1, 1), (0, 0), (1, 1), 1),
    (1, 32, 6, 7, 32, 3, 3, (1, 2), (3, 2), (2, 1), 2),
    (2, 8, 10, 10, 8, 3, 3, (1, 1), (1, 1), (1, 1), 8),
    (1, 4, 5, 5, 12, 2, 2, (3, 3), (2, 2), (2, 2), 4),
    (1, 17, 4, 4, 130, 2, 1, (1, 1), (0, 0), (1, 1), 1),
]


def _conf(shape):
    n, c, h, w, k, r, s, stride, padding, dilation, groups = shape
    return (n, c, h, w), (k, c // groups, r, s), list(stride), list(padding), list(dilation), groups


def _reference(x, w, b, gy, stride, padding, dilation, groups):
    """F.conv2d's output and gradients, in float64."""
    x64, w64, b64 = (t.detach().double().clone().requires_grad_() for t in (x, w, b))
    y = F.conv2d(x64, w64, b64, stride, padding, dilation, groups)
    y.backward(gy.double())
    return y.detach(), x64.grad, w64.grad, b64.grad


def _emulated_all(x, w, b, gy, stride, padding, dilation, groups, algo, chunks=-1):
    m = emulated()
    y = m.forward(x, w, b, stride, padding, dilation, groups, algo)
    gx = m.backward_input(gy, w, list(x.shape), stride, padding, dilation, groups, algo)
    gw = m.backward_weight(gy, x, list(w.shape), stride, padding, dilation, groups, algo, chunks)
    gb = m.backward_bias(gy)
    return y, gx, gw, gb


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("shape", SHAPES)
def test_float64_matches_conv2d(shape, algo):
    torch.manual_seed(0)
    xs, ws, stride, padding, dilation, groups = _conf(shape)
    x, w = torch.randn(xs, dtype=torch.float64), torch.randn(ws, dtype=torch.float64)
    b = torch.randn(ws[0], dtype=torch.float64)
    y_ref = F.conv2d(x, w, b, stride, padding, dilation, groups)
    gy = torch.randn_like(y_ref)
    ref = _reference(x, w, b, gy, stride, padding, dilation, groups)
    got = _emulated_all(x, w, b, gy, stride, padding, dilation, groups, algo)
    for name, g, r in zip(("output", "grad_input", "grad_weight", "grad_bias"), got, ref):
        assert g.shape == r.shape, name
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10, msg=name)


ACTIVATIONS = {"relu": F.relu, "leaky_relu": lambda y: F.leaky_relu(y, 0.2),
               "sigmoid": torch.sigmoid, "tanh": torch.tanh}


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_fused_activation_epilogue(activation, algo):
    torch.manual_seed(0)
    for shape in (SHAPES[1], SHAPES[5]):
        xs, ws, stride, padding, dilation, groups = _conf(shape)
        x, w = torch.randn(xs, dtype=torch.float64), torch.randn(ws, dtype=torch.float64)
        b = torch.randn(ws[0], dtype=torch.float64)
        y = emulated().forward_activation(x, w, b, stride, padding, dilation, groups, algo, activation, 0.2)
        ref = ACTIVATIONS[activation](F.conv2d(x, w, b, stride, padding, dilation, groups))
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)


def _low_precision_tolerance(value, ref, torch_value):
    """2x torch's own error against the float64 reference, with a floor of a
    few units in the last place of the dtype at the values' scale."""
    torch_err = (torch_value.double() - ref).abs().max().item()
    eps = torch.finfo(value.dtype).eps
    return 2 * torch_err + 4 * eps * ref.abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("shape", SHAPES[:6])
def test_low_precision_within_twice_torch_error(shape, algo, dtype):
    torch.manual_seed(1)
    xs, ws, stride, padding, dilation, groups = _conf(shape)
    x, w = torch.randn(xs).to(dtype), torch.randn(ws).to(dtype)
    b = torch.randn(ws[0]).to(dtype)
    gy = torch.randn(F.conv2d(x.float(), w.float(), None, stride, padding, dilation, groups).shape).to(dtype)
    ref = _reference(x, w, b, gy, stride, padding, dilation, groups)
    xt, wt, bt = (t.clone().requires_grad_() for t in (x, w, b))
    yt = F.conv2d(xt, wt, bt, stride, padding, dilation, groups)
    yt.backward(gy)
    theirs = (yt.detach(), xt.grad, wt.grad, bt.grad)
    got = _emulated_all(x, w, b, gy, stride, padding, dilation, groups, algo)
    for name, g, r, t in zip(("output", "grad_input", "grad_weight", "grad_bias"), got, ref, theirs):
        assert g.dtype == dtype, name
        err = (g.double() - r).abs().max().item()
        assert err <= _low_precision_tolerance(g, r, t), (name, err, (t.double() - r).abs().max().item())


@pytest.mark.parametrize("algo", ALGOS)
def test_any_strides(algo):
    """channels_last, permuted and sliced views read through their strides;
    results come back in nn.Conv2d's memory format."""
    torch.manual_seed(2)
    base = torch.randn(2, 24, 13, 9, dtype=torch.float64)
    w_base = torch.randn(18, 12, 3, 3, dtype=torch.float64)
    b = torch.randn(36, dtype=torch.float64)[::2]
    views = [
        (base.contiguous(memory_format=torch.channels_last)[:, ::2], w_base),
        (base.permute(0, 1, 3, 2)[:, 1::2], w_base.contiguous(memory_format=torch.channels_last)),
        (base[:, :12, 1:, ::2], w_base.permute(0, 1, 3, 2)),
    ]
    m = emulated()
    for x, w in views:
        for groups in (1, 3):
            wg = w[:, : 12 // groups]
            y_ref = F.conv2d(x, wg, b[:18], 1, 1, 1, groups)
            y = m.forward(x, wg, b[:18], [1, 1], [1, 1], [1, 1], groups, algo)
            torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
            cl = x.is_contiguous(memory_format=torch.channels_last) or wg.is_contiguous(
                memory_format=torch.channels_last)
            if cl:
                assert y.is_contiguous(memory_format=torch.channels_last)
            gy = torch.randn(y_ref.shape, dtype=torch.float64).permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
            _, gx_ref, gw_ref, gb_ref = _reference(x, wg, b[:18], gy, [1, 1], [1, 1], [1, 1], groups)
            gx = m.backward_input(gy, wg, list(x.shape), [1, 1], [1, 1], [1, 1], groups, algo)
            gw = m.backward_weight(gy, x, list(wg.shape), [1, 1], [1, 1], [1, 1], groups, algo, -1)
            torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(gw, gw_ref, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(m.backward_bias(gy), gb_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("algo", [DIRECT, GEMM_SMALL])
@pytest.mark.parametrize("chunks", [1, 3, 7])
def test_grad_weight_chunks(algo, chunks):
    """The N*P*Q reduction split into several chunks (and, for the direct
    kernel, several 1024-pixel sub-chunks per chunk) sums to the same."""
    torch.manual_seed(3)
    x = torch.randn(3, 4, 30, 29, dtype=torch.float64)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    gy = torch.randn(3, 4, 30, 29, dtype=torch.float64)
    _, _, gw_ref, gb_ref = _reference(x, w, torch.zeros(4, dtype=torch.float64), gy, [1, 1], [1, 1], [1, 1], 2)
    gw = emulated().backward_weight(gy, x, list(w.shape), [1, 1], [1, 1], [1, 1], 2, algo, chunks)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-10, atol=1e-10)
    # 3*30*29 pixels span several bias chunks of 4096.
    torch.testing.assert_close(emulated().backward_bias(gy), gb_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("algo", ALGOS)
def test_empty_batch_and_empty_image(algo):
    m = emulated()
    x = torch.randn(0, 4, 5, 5)
    w = torch.randn(6, 4, 3, 3)
    b = torch.randn(6)
    assert m.forward(x, w, b, [1, 1], [0, 0], [1, 1], 1, algo).shape == (0, 6, 3, 3)
    gy = torch.randn(0, 6, 3, 3)
    assert m.backward_input(gy, w, [0, 4, 5, 5], [1, 1], [0, 0], [1, 1], 1, algo).shape == (0, 4, 5, 5)
    gw = m.backward_weight(gy, x, [6, 4, 3, 3], [1, 1], [0, 0], [1, 1], 1, algo, -1)
    assert torch.equal(gw, torch.zeros(6, 4, 3, 3))
    assert torch.equal(m.backward_bias(gy), torch.zeros(6))
    # A 0-high image with padding still has outputs: all padding, so the bias.
    # (F.conv2d refuses such an input.)
    x = torch.randn(2, 4, 0, 3)
    y = m.forward(x, w, b, [1, 1], [2, 1], [1, 1], 1, algo)
    assert torch.equal(y, b.view(1, 6, 1, 1).expand(2, 6, 2, 3))
    gw = m.backward_weight(torch.randn(2, 6, 2, 3), x, [6, 4, 3, 3], [1, 1], [2, 1], [1, 1], 1, algo, -1)
    assert torch.equal(gw, torch.zeros(6, 4, 3, 3))


@pytest.mark.parametrize("algo", ALGOS)
def test_deterministic(algo):
    """Two runs give the same bits although the emulator's threads interleave
    differently every time."""
    torch.manual_seed(4)
    x, w, b = torch.randn(2, 20, 9, 9), torch.randn(20, 10, 3, 3), torch.randn(20)
    gy = torch.randn(2, 20, 9, 9)
    a = _emulated_all(x, w, b, gy, [1, 1], [1, 1], [1, 1], 2, algo, 5)
    c = _emulated_all(x, w, b, gy, [1, 1], [1, 1], [1, 1], 2, algo, 5)
    for u, v in zip(a, c):
        assert torch.equal(u, v)


def test_heuristic_choices():
    """Depthwise and small groups take the direct kernels, dense layers the
    GEMMs, wide problems the large tile, doubles never; grad weight chunks
    fill the grid but keep every chunk >= 256 pixels."""
    m = emulated()

    def choose(n, c, h, w, k, r, s, stride=1, pad=0, groups=1, dtype=torch.float32):
        return m.choices([n, c, h, w], [k, c // groups, r, s], [stride] * 2, [pad] * 2, [1, 1], groups, dtype, False)

    assert choose(32, 144, 56, 56, 144, 3, 3, pad=1, groups=144)[:3] == [DIRECT] * 3  # mbv2_dw_3x3
    assert choose(32, 128, 28, 28, 128, 3, 3, pad=1, groups=32)[:3] == [DIRECT] * 3  # grouped_3x3
    assert choose(1, 1, 100, 100, 4, 3, 3)[:3] == [DIRECT] * 3  # seed_pattern
    fwd, bwd_in, bwd_w, chunks = choose(32, 3, 224, 224, 64, 7, 7, stride=2, pad=3)  # r50_conv1
    assert (fwd, bwd_in, bwd_w) == (GEMM_SMALL, DIRECT, GEMM_SMALL)
    assert choose(16, 128, 112, 112, 128, 3, 3, pad=1)[:3] == [GEMM_LARGE] * 3  # vgg_3x3
    assert choose(16, 128, 112, 112, 128, 3, 3, pad=1, dtype=torch.float64)[:3] == [GEMM_SMALL] * 3
    assert choose(32, 64, 56, 56, 64, 3, 3, pad=1)[:3] == [GEMM_SMALL] * 3  # r50_res2_3x3
    *_, chunks = choose(32, 64, 56, 56, 64, 3, 3, pad=1)
    assert 1 < chunks and 32 * 56 * 56 // chunks >= 256
    assert choose(1, 1, 20, 20, 16, 3, 3)[3] == 1  # 324 pixels: one chunk


def test_randomized_sweep():
    """Random shapes, hyper-parameters (padding past the kernel, strides past
    it, large dilations), layouts, kernels and chunk counts, in float64."""
    import random

    rng = random.Random(5)
    m = emulated()
    for trial in range(24):
        groups = rng.choice([1, 1, 2, 3])
        cg, kg = rng.choice([1, 2, 5, 17]), rng.choice([1, 3, 16, 19])
        r, s = rng.randint(1, 4), rng.randint(1, 4)
        stride = [rng.randint(1, 4), rng.randint(1, 4)]
        dilation = [rng.randint(1, 3), rng.randint(1, 3)]
        padding = [rng.randint(0, 4), rng.randint(0, 4)]
        h = max(1, dilation[0] * (r - 1) + 1 - 2 * padding[0]) + rng.randint(0, 6)
        w = max(1, dilation[1] * (s - 1) + 1 - 2 * padding[1]) + rng.randint(0, 6)
        n, c, k = rng.randint(1, 2), cg * groups, kg * groups
        algo, chunks = rng.choice(ALGOS), rng.choice([-1, 1, 2, 5])
        g = torch.Generator().manual_seed(trial)
        x = torch.randn(n, c, h, w, dtype=torch.float64, generator=g)
        wt = torch.randn(k, cg, r, s, dtype=torch.float64, generator=g)
        b = torch.randn(k, dtype=torch.float64, generator=g)
        if rng.random() < 0.5:
            x = x.contiguous(memory_format=torch.channels_last)
        y_ref = F.conv2d(x, wt, b, stride, padding, dilation, groups)
        gy = torch.randn(y_ref.shape, dtype=torch.float64, generator=g)
        ref = _reference(x, wt, b, gy, stride, padding, dilation, groups)
        got = _emulated_all(x, wt, b, gy, stride, padding, dilation, groups, algo, chunks)
        for name, o, rf in zip(("output", "grad_input", "grad_weight", "grad_bias"), got, ref):
            torch.testing.assert_close(
                o, rf, rtol=1e-10, atol=1e-10,
                msg=lambda msg: f"{(n, c, h, w, k, r, s, stride, padding, dilation, groups)} algo {algo} {name}: {msg}")


# ---------------------------------------------------------------------------
# Tensor-core kernels (csrc/cuda/tensorop/): TF32 for float32, bf16 and fp16.

# (N, C, H, W, K, R, S, stride, padding, dilation, groups): channel counts
# that are not multiples of 8, strides that give grad input several phases
# (and phases no tap reaches), dilations, groups, tiles cut at every edge,
# and 1x1 filters without padding (the plain-GEMM fetch).
TENSOR_SHAPES = [
    (2, 5, 9, 8, 7, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (2, 6, 11, 9, 6, 3, 2, (2, 1), (1, 0), (2, 1), 3),
    (1, 3, 13, 11, 20, 5, 3, (2, 3), (2, 1), (1, 2), 1),
    (1, 32, 6, 7, 24, 3, 3, (1, 2), (3, 2), (2, 1), 2),
    (1, 17, 4, 4, 130, 2, 1, (1, 1), (0, 0), (1, 1), 1),
    (1, 16, 5, 6, 16, 1, 1, (2, 2), (0, 0), (1, 1), 1),
    (3, 8, 10, 9, 8, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (2, 24, 5, 7, 40, 1, 1, (1, 1), (0, 0), (1, 1), 1),  # 1x1: the plain GEMM
]


def round_tf32(t):
    """cvt.rna.tf32.f32 in Python: round float32 to 10 mantissa bits, to
    nearest, ties away from zero (on the magnitude), low 13 bits zero."""
    i = t.float().contiguous().view(torch.int32).to(torch.int64)
    sign = i & 0x80000000
    mag = ((i & 0x7FFFFFFF) + 0x1000) & ~0x1FFF
    out = sign | mag
    out = torch.where(out >= 2**31, out - 2**32, out).to(torch.int32)
    return out.view(torch.float32).reshape(t.shape)


def test_round_tf32_known_answers():
    """The test's own rounding rule against hand-worked bit patterns."""
    bits = torch.tensor([0x3F800FFF, 0x3F801000, 0x3F801001, 0xBF801000, 0x3F802FFF, 0x3F803000],
                        dtype=torch.int64)
    want = torch.tensor([0x3F800000, 0x3F802000, 0x3F802000, 0xBF802000, 0x3F802000, 0x3F804000],
                        dtype=torch.int64)
    as_f = torch.where(bits >= 2**31, bits - 2**32, bits).to(torch.int32).view(torch.float32)
    got = round_tf32(as_f).view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    assert got.tolist() == want.tolist()


def _layout(t, channels_last):
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def _tf32_case(shape, channels_last, seed=0):
    """TF32-rounded float32 inputs, the float64 reference on them, and the
    float64 result on their magnitudes: a float32 accumulation of n exact
    products differs from the exact sum by at most n * 2^-24 * sum |a*b|."""
    torch.manual_seed(seed)
    xs, ws, stride, padding, dilation, groups = _conf(shape)
    x = _layout(round_tf32(torch.randn(xs)), channels_last)
    w = round_tf32(torch.randn(ws))
    b = torch.randn(ws[0])
    gy = torch.randn(F.conv2d(x, w, None, stride, padding, dilation, groups).shape)
    gy = _layout(round_tf32(gy), channels_last)
    ref = _reference(x, w, b, gy, stride, padding, dilation, groups)
    mag = _reference(x.abs(), w.abs(), b.abs(), gy.abs(), stride, padding, dilation, groups)
    return x, w, b, gy, ref, mag


def _assert_tf32_close(name, got, ref, mag, terms):
    assert got.dtype == torch.float32 and got.shape == ref.shape, name
    bound = (terms + 2) * 2.0**-24 * mag + 1e-30
    err = (got.double() - ref).abs()
    worst = (err / bound).max().item()
    assert worst <= 1, (name, worst, err.max().item())


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("algo", TENSOR_OPS)
@pytest.mark.parametrize("shape", TENSOR_SHAPES)
def test_tf32_matches_conv2d_on_rounded_inputs(shape, algo, channels_last):
    """Operands rounded as the hardware rounds them (cvt.rna.tf32), so the
    only error left is float32 accumulation: the bound is tight enough that
    a kernel which skipped the rounding (the mma truncates) fails it."""
    n, c, h, w_, k, r, s_, *_ = shape
    groups = shape[-1]
    x, w, b, gy, ref, mag = _tf32_case(shape, channels_last)
    _, _, stride, padding, dilation, _ = _conf(shape)
    got = _emulated_all(x, w, b, gy, stride, padding, dilation, groups, algo, 3)
    terms = {"output": (c // groups) * r * s_ + 1, "grad_input": (k // groups) * r * s_,
             "grad_weight": gy.shape[0] * gy.shape[2] * gy.shape[3] + 3}
    for name, g, rf, mg in zip(("output", "grad_input", "grad_weight"), got, ref, mag):
        _assert_tf32_close(name, g, rf, mg, terms[name])


def test_tf32_rounding_is_visible():
    """Unrounded float32 inputs give a result that differs from the float64
    reference on those inputs by far more than accumulation error: the test
    above would catch truncated or unrounded operands."""
    shape = TENSOR_SHAPES[0]
    torch.manual_seed(0)
    xs, ws, stride, padding, dilation, groups = _conf(shape)
    x, w = torch.randn(xs), torch.randn(ws)
    y = emulated().forward(x, w, None, stride, padding, dilation, groups, TENSOR_SMALL)
    ref = F.conv2d(x.double(), w.double(), None, stride, padding, dilation, groups)
    mag = F.conv2d(x.double().abs(), w.double().abs(), None, stride, padding, dilation, groups)
    worst = ((y.double() - ref).abs() / ((ws[1] * 9 + 2) * 2.0**-24 * mag)).max().item()
    assert worst > 4, worst
    # ... and rounding the inputs the rna way makes it agree.
    y = emulated().forward(round_tf32(x), round_tf32(w), None, stride, padding, dilation, groups, TENSOR_SMALL)
    ref = F.conv2d(round_tf32(x).double(), round_tf32(w).double(), None, stride, padding, dilation, groups)
    _assert_tf32_close("output", y, ref, mag, ws[1] * 9)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("algo", TENSOR_OPS)
@pytest.mark.parametrize("shape", TENSOR_SHAPES)
def test_half_and_bfloat16_within_twice_torch_error(shape, algo, dtype, channels_last):
    torch.manual_seed(1)
    xs, ws, stride, padding, dilation, groups = _conf(shape)
    x, w = _layout(torch.randn(xs).to(dtype), channels_last), torch.randn(ws).to(dtype)
    b = torch.randn(ws[0]).to(dtype)
    gy = torch.randn(F.conv2d(x.float(), w.float(), None, stride, padding, dilation, groups).shape).to(dtype)
    gy = _layout(gy, channels_last)
    ref = _reference(x, w, b, gy, stride, padding, dilation, groups)
    xt, wt, bt = (t.clone().requires_grad_() for t in (x, w, b))
    yt = F.conv2d(xt, wt, bt, stride, padding, dilation, groups)
    yt.backward(gy)
    theirs = (yt.detach(), xt.grad, wt.grad, bt.grad)
    got = _emulated_all(x, w, b, gy, stride, padding, dilation, groups, algo, 2)
    for name, g, r, t in zip(("output", "grad_input", "grad_weight"), got, ref, theirs):
        assert g.dtype == dtype and g.shape == r.shape, name
        err = (g.double() - r).abs().max().item()
        assert err <= _low_precision_tolerance(g, r, t), (name, err, (t.double() - r).abs().max().item())
    if channels_last:
        assert got[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_tensorop_fused_activation_and_bias(activation):
    torch.manual_seed(0)
    shape = TENSOR_SHAPES[3]
    x, w, b, _, _, _ = _tf32_case(shape, True)
    _, _, stride, padding, dilation, groups = _conf(shape)
    bias = torch.randn(2 * w.shape[0])[::2]  # a strided bias
    y = emulated().forward_activation(x, w, bias, stride, padding, dilation, groups, TENSOR_SMALL, activation, 0.2)
    ref = ACTIVATIONS[activation](F.conv2d(x.double(), w.double(), bias.double(), stride, padding, dilation, groups))
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)


def test_tensorop_deterministic():
    """Same bits on every run although the threads interleave differently
    and the grad weight is split into chunks."""
    shape = TENSOR_SHAPES[6]
    x, w, b, gy, _, _ = _tf32_case(shape, False, seed=4)
    _, _, stride, padding, dilation, groups = _conf(shape)
    a = _emulated_all(x, w, b, gy, stride, padding, dilation, groups, TENSOR_SMALL, 3)
    c = _emulated_all(x, w, b, gy, stride, padding, dilation, groups, TENSOR_SMALL, 3)
    for u, v in zip(a, c):
        assert torch.equal(u, v)


def test_tensorop_empty_batch():
    m = emulated()
    x, w = torch.randn(0, 8, 5, 5, dtype=torch.half), torch.randn(16, 8, 3, 3, dtype=torch.half)
    assert m.forward(x, w, None, [1, 1], [1, 1], [1, 1], 1, TENSOR_SMALL).shape == (0, 16, 5, 5)
    gy = torch.randn(0, 16, 5, 5, dtype=torch.half)
    assert m.backward_input(gy, w, [0, 8, 5, 5], [1, 1], [1, 1], [1, 1], 1, TENSOR_SMALL).shape == (0, 8, 5, 5)
    gw = m.backward_weight(gy, x, [16, 8, 3, 3], [1, 1], [1, 1], [1, 1], 1, TENSOR_SMALL, -1)
    assert torch.equal(gw, torch.zeros(16, 8, 3, 3, dtype=torch.half))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("algo", TENSOR_OPS)
def test_tensorop_ldmatrix_without_bank_conflicts(algo, dtype):
    """The padded 80-byte rows of the stages put the eight rows of every
    8x8 matrix ldmatrix reads in distinct bank groups: no extra wavefront,
    in every pass."""
    m = emulated()
    x, w = torch.randn(2, 16, 6, 7).to(dtype), torch.randn(24, 16, 3, 3).to(dtype)
    gy = torch.randn(2, 24, 6, 7).to(dtype)
    m.take_ldmatrix_stats()
    m.forward(x, w, None, [1, 1], [1, 1], [1, 1], 1, algo)
    m.backward_input(gy, w, list(x.shape), [1, 1], [1, 1], [1, 1], 1, algo)
    m.backward_weight(gy, x, list(w.shape), [1, 1], [1, 1], [1, 1], 1, algo, 2)
    matrices, extra = m.take_ldmatrix_stats()
    assert matrices > 0 and extra == 0, (matrices, extra)


def test_tensorop_ring_with_poisoned_pending_copies():
    """A pending cp.async poisons its destination until its wait: a thread
    that still read a stage another thread has begun to refill (a missing
    barrier before the refill) would read NaN. Every pass stays exact."""
    m = emulated()
    shape = TENSOR_SHAPES[2]
    x, w, b, gy, ref, mag = _tf32_case(shape, True, seed=6)
    _, _, stride, padding, dilation, groups = _conf(shape)
    m.set_cp_async_poisoned(True)
    try:
        got = _emulated_all(x, w, b, gy, stride, padding, dilation, groups, TENSOR_SMALL, 2)
    finally:
        m.set_cp_async_poisoned(False)
    terms = {"output": 3 * 15 + 1, "grad_input": 20 * 15, "grad_weight": gy[0, 0].numel() + 2}
    for name, g, rf, mg in zip(("output", "grad_input", "grad_weight"), got, ref, mag):
        _assert_tf32_close(name, g, rf, mg, terms[name])


def test_tensor_core_dispatch_rule():
    """float16 / bfloat16 always on tensor cores, float32 only with TF32
    allowed, float64 never; the direct kernels keep tiny channel counts."""
    m = emulated()

    def choose(dtype, tf32, c=64, k=64, n=32, hw=56, groups=1):
        return m.choices([n, c, hw, hw], [k, c // groups, 3, 3], [1, 1], [1, 1], [1, 1], groups, dtype, tf32)[:3]

    for tf32 in (False, True):
        assert choose(torch.float16, tf32) == [TENSOR_SMALL] * 3
        assert choose(torch.bfloat16, tf32) == [TENSOR_SMALL] * 3
        assert choose(torch.float64, tf32) == [GEMM_SMALL] * 3
    assert choose(torch.float32, True) == [TENSOR_SMALL] * 3
    assert choose(torch.float32, False) == [GEMM_SMALL] * 3
    assert choose(torch.float32, True, c=128, k=128, n=16, hw=112) == [TENSOR_LARGE] * 3  # vgg_3x3
    assert choose(torch.float16, True, c=144, k=144, groups=144) == [DIRECT] * 3  # depthwise
