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
DIRECT, GEMM_SMALL, GEMM_LARGE = 0, 1, 2
ALGOS = [DIRECT, GEMM_SMALL, GEMM_LARGE]


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
        return m.choices([n, c, h, w], [k, c // groups, r, s], [stride] * 2, [pad] * 2, [1, 1], groups, dtype)

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
