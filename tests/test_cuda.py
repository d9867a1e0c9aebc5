"""CUDA-only checks of the kernels of csrc/cuda/: gradcheck, the randomized
sweep against F.conv2d in all four dtypes, CPU-vs-CUDA agreement, the direct
(depthwise, grouped), GEMM and tensor-core paths (TF32 following
torch.backends.cudnn.allow_tf32, bf16, fp16), any strides, batch 0,
torch.compile with and without CUDA graphs, determinism, and a tensor past
2^31 elements.
Skips cleanly without a GPU (tests/test_cuda_emulated.py runs the same
device code on the CPU)."""
import random

import pytest
import torch
import torch.nn.functional as F

import conv_ext
from conv_ext import ops
from test_cuda_emulated import TENSOR_SHAPES, round_tf32

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

LOW = [torch.float32, torch.float16, torch.bfloat16]

# (N, C, H, W, K, R, S, stride, padding, dilation, groups); the comments name
# the kernel csrc/cuda/heuristics.h picks (forward / grad input / grad weight).
SHAPES = [
    (2, 3, 17, 15, 16, 3, 3, (1, 1), (1, 1), (1, 1), 1),      # GEMM / direct / GEMM
    (2, 32, 12, 11, 48, 3, 3, (2, 1), (1, 2), (1, 2), 1),     # GEMM
    (3, 64, 9, 10, 32, 5, 3, (1, 2), (2, 1), (2, 1), 2),      # GEMM, grouped
    (2, 16, 14, 14, 16, 3, 3, (1, 1), (1, 1), (1, 1), 16),    # direct, depthwise
    (2, 32, 10, 9, 32, 3, 3, (2, 2), (1, 1), (1, 1), 8),      # direct, 4 channels per group
    (1, 8, 7, 13, 24, 2, 4, (3, 1), (0, 3), (2, 1), 4),       # direct fwd/wgrad, uneven
    (2, 20, 8, 8, 17, 1, 1, (1, 1), (0, 0), (1, 1), 1),       # 1x1, GEMM
    (8, 128, 64, 64, 128, 3, 3, (1, 1), (1, 1), (1, 1), 1),   # large tiles (not float64)
]


def _inputs(shape, dtype, device, seed=0):
    n, c, h, w, k, r, s, stride, padding, dilation, groups = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g).to(device, dtype)
    wt = torch.randn(k, c // groups, r, s, generator=g).to(device, dtype)
    b = torch.randn(k, generator=g).to(device, dtype)
    return x, wt, b, (list(stride), list(padding), list(dilation), groups)


def _ours(x, w, b, conf, gy):
    stride, padding, dilation, groups = conf
    y = ops.conv2d_forward(x, w, b, stride, padding, dilation, groups)
    gx = ops.conv2d_backward_input(gy, w, list(x.shape), stride, padding, dilation, groups)
    gw = ops.conv2d_backward_weight(gy, x, list(w.shape), stride, padding, dilation, groups)
    gb = ops.conv2d_backward_bias(gy)
    return y, gx, gw, gb


def _torch(x, w, b, conf, gy):
    stride, padding, dilation, groups = conf
    xs, ws, bs = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y = F.conv2d(xs, ws, bs, stride, padding, dilation, groups)
    y.backward(gy.to(y.dtype))
    return y.detach(), xs.grad, ws.grad, bs.grad


def _grad_output(x, w, conf, dtype, seed=1):
    stride, padding, dilation, groups = conf
    shape = F.conv2d(x.float(), w.float(), None, stride, padding, dilation, groups).shape
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(x.device, dtype)


NAMES = ("output", "grad_input", "grad_weight", "grad_bias")


@pytest.mark.parametrize("shape", SHAPES)
def test_float64_matches_conv2d(shape):
    x, w, b, conf = _inputs(shape, torch.float64, "cuda")
    gy = _grad_output(x, w, conf, torch.float64)
    for name, got, ref in zip(NAMES, _ours(x, w, b, conf, gy), _torch(x, w, b, conf, gy)):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10, msg=name)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("shape", SHAPES)
def test_low_precision_within_twice_torch_error(shape, dtype):
    """Against a float64 reference, our error is at most twice torch's own
    (cuDNN, exact FP32: conftest turns TF32 off) plus a few ulps."""
    x, w, b, conf = _inputs(shape, dtype, "cuda")
    gy = _grad_output(x, w, conf, dtype)
    ref = _torch(x.double(), w.double(), b.double(), conf, gy.double())
    theirs = _torch(x, w, b, conf, gy)
    ours = _ours(x, w, b, conf, gy)
    eps = torch.finfo(dtype).eps
    for name, o, r, t in zip(NAMES, ours, ref, theirs):
        assert o.dtype == dtype and o.shape == r.shape, name
        err = (o.double() - r).abs().max().item()
        torch_err = (t.double() - r).abs().max().item()
        assert err <= 2 * torch_err + 4 * eps * r.abs().max().item(), (name, err, torch_err)


def test_randomized_sweep():
    """Random shapes and hyper-parameters, all four dtypes."""
    rng = random.Random(0)
    for trial in range(40):
        groups = rng.choice([1, 1, 2, 3, 4])
        cg, kg = rng.choice([1, 2, 5, 16, 24]), rng.choice([1, 3, 16, 20])
        r, s = rng.randint(1, 5), rng.randint(1, 5)
        stride = [rng.randint(1, 3), rng.randint(1, 3)]
        dilation = [rng.randint(1, 2), rng.randint(1, 2)]
        padding = [rng.randint(0, 2), rng.randint(0, 2)]
        h = max(1, dilation[0] * (r - 1) + 1 - 2 * padding[0]) + rng.randint(0, 12)
        w = max(1, dilation[1] * (s - 1) + 1 - 2 * padding[1]) + rng.randint(0, 12)
        shape = (rng.randint(1, 3), cg * groups, h, w, kg * groups, r, s, stride, padding, dilation, groups)
        dtype = rng.choice([torch.float64, *LOW])
        x, wt, b, conf = _inputs(shape, dtype, "cuda", seed=trial)
        gy = _grad_output(x, wt, conf, dtype, seed=trial)
        ref = _torch(x.double(), wt.double(), b.double(), conf, gy.double())
        ours = _ours(x, wt, b, conf, gy)
        if dtype == torch.float64:
            for name, o, rf in zip(NAMES, ours, ref):
                torch.testing.assert_close(o, rf, rtol=1e-10, atol=1e-10, msg=f"{shape} {name}")
            continue
        theirs = _torch(x, wt, b, conf, gy)
        eps = torch.finfo(dtype).eps
        for name, o, rf, t in zip(NAMES, ours, ref, theirs):
            err = (o.double() - rf).abs().max().item()
            torch_err = (t.double() - rf).abs().max().item()
            assert err <= 2 * torch_err + 4 * eps * rf.abs().max().item(), (shape, dtype, name, err, torch_err)


@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[2], SHAPES[3], SHAPES[5]])
def test_gradcheck_float64(shape):
    n, c, h, w, k, r, s, stride, padding, dilation, groups = shape
    x = torch.randn(1, c, min(h, 7), min(w, 7), dtype=torch.float64, device="cuda", requires_grad=True)
    wt = torch.randn(k, c // groups, r, s, dtype=torch.float64, device="cuda", requires_grad=True)
    b = torch.randn(k, dtype=torch.float64, device="cuda", requires_grad=True)
    fn = lambda x, wt, b: conv_ext.conv2d(x, wt, b, stride, padding, dilation, groups)  # noqa: E731
    try:
        fn(x, wt, b)
    except RuntimeError:
        pytest.skip("kernel larger than the cropped input")
    assert torch.autograd.gradcheck(fn, (x, wt, b))
    assert torch.autograd.gradgradcheck(fn, (x, wt, b))


@pytest.mark.parametrize("dtype", [torch.float64, *LOW])
@pytest.mark.parametrize("shape", SHAPES[:6])
def test_cpu_and_cuda_agree(shape, dtype):
    x, w, b, conf = _inputs(shape, dtype, "cpu")
    gy = _grad_output(x, w, conf, dtype)
    cpu = _ours(x, w, b, conf, gy)
    cuda = _ours(*(t.cuda() for t in (x, w, b)), conf, gy.cuda())
    tol = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    for name, a, c in zip(NAMES, cpu, cuda):
        scale = max(1.0, a.double().abs().max().item())
        torch.testing.assert_close(c.cpu().double(), a.double(), rtol=tol, atol=tol * scale, msg=name)


@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[3], SHAPES[4]])
def test_any_strides_and_channels_last(shape):
    x, w, b, conf = _inputs(shape, torch.float64, "cuda")
    gy = _grad_output(x, w, conf, torch.float64)
    ref = _torch(x, w, b, conf, gy)
    variants = [
        (x.contiguous(memory_format=torch.channels_last), w, gy.contiguous(memory_format=torch.channels_last)),
        (x, w.contiguous(memory_format=torch.channels_last), gy),
        (torch.stack([x, x], -1)[..., 0], w.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2), gy.transpose(2, 3).contiguous().transpose(2, 3)),
    ]
    for xv, wv, gyv in variants:
        ours = _ours(xv, wv, torch.stack([b, b], 1)[:, 0], conf, gyv)  # bias stride 2
        for name, o, r in zip(NAMES, ours, ref):
            torch.testing.assert_close(o, r, rtol=1e-10, atol=1e-10, msg=name)
        if xv.is_contiguous(memory_format=torch.channels_last) and xv.shape[1] > 1:
            assert ours[0].is_contiguous(memory_format=torch.channels_last)


def test_batch_zero_and_empty_image():
    x = torch.randn(0, 8, 6, 6, device="cuda")
    w = torch.randn(16, 8, 3, 3, device="cuda")
    b = torch.randn(16, device="cuda")
    conf = ([1, 1], [1, 1], [1, 1], 1)
    gy = torch.randn(0, 16, 6, 6, device="cuda")
    y, gx, gw, gb = _ours(x, w, b, conf, gy)
    assert y.shape == (0, 16, 6, 6) and gx.shape == x.shape
    assert torch.equal(gw, torch.zeros_like(w)) and torch.equal(gb, torch.zeros_like(b))
    # A 0-high image with padding (F.conv2d refuses it): every tap reads
    # padding, so the output is the bias.
    x = torch.randn(2, 8, 0, 4, device="cuda")
    y = ops.conv2d_forward(x, w, b, [1, 1], [2, 1], [1, 1], 1)
    assert torch.equal(y, b.view(1, 16, 1, 1).expand(2, 16, 2, 4))


@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[3], SHAPES[7]])
def test_deterministic(shape):
    x, w, b, conf = _inputs(shape, torch.float32, "cuda")
    gy = _grad_output(x, w, conf, torch.float32)
    a, c = _ours(x, w, b, conf, gy), _ours(x, w, b, conf, gy)
    for name, u, v in zip(NAMES, a, c):
        assert torch.equal(u, v), name


def test_ops_pass_opcheck():
    x, w, b, (stride, padding, dilation, groups) = _inputs(SHAPES[2], torch.float32, "cuda")
    gy = _grad_output(x, w, (stride, padding, dilation, groups), torch.float32)
    torch.library.opcheck(ops.conv2d_forward, (x, w, b, stride, padding, dilation, groups))
    torch.library.opcheck(ops.conv2d_backward_input, (gy, w, list(x.shape), stride, padding, dilation, groups))
    torch.library.opcheck(ops.conv2d_backward_weight, (gy, x, list(w.shape), stride, padding, dilation, groups))
    torch.library.opcheck(ops.conv2d_backward_bias, (gy,))


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_torch_compile(mode):
    """Under torch.compile, and with CUDA graphs (reduce-overhead), which
    replay the kernels on a capture stream: correct only if every launch and
    scratch buffer follows the current stream."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        conv_ext.MyConv2d(8, 32, 3, padding=1), torch.nn.ReLU(),
        conv_ext.MyConv2d(32, 32, 3, padding=1, groups=32), torch.nn.ReLU(),
        conv_ext.MyConv2d(32, 16, 1)).cuda()
    reference = torch.nn.Sequential(
        torch.nn.Conv2d(8, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, padding=1, groups=32), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 16, 1)).cuda()
    reference.load_state_dict(model.state_dict())
    compiled = torch.compile(model, mode=mode, fullgraph=True)
    for step in range(4):
        torch.compiler.cudagraph_mark_step_begin()
        x = torch.randn(4, 8, 20, 20, device="cuda", requires_grad=True)
        y = compiled(x)
        y.square().sum().backward()
        gx, x.grad = x.grad.clone(), None
        y_ref = reference(x)
        y_ref.square().sum().backward()
        torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(gx, x.grad, rtol=1e-4, atol=1e-4)
        for p, q in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-3)
            p.grad = q.grad = None


def _tf32_bound_check(name, got, ref, mag, terms):
    """float32 accumulation of n exact TF32 products: within n * 2^-24 of the
    sum of their magnitudes."""
    bound = (terms + 2) * 2.0**-24 * mag + 1e-30
    worst = ((got.double() - ref).abs() / bound).max().item()
    assert worst <= 1, (name, worst)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", TENSOR_SHAPES + [SHAPES[1], SHAPES[2], SHAPES[7]])
def test_tf32_on_rounded_inputs(shape, channels_last):
    """With allow_tf32 (nn.Conv2d's default) float32 runs on TF32 tensor
    cores: on inputs already rounded as cvt.rna.tf32 rounds them, only the
    float32 accumulation differs from a float64 reference."""
    n, c, h, w_, k, r, s_, stride, padding, dilation, groups = shape
    conf = (list(stride), list(padding), list(dilation), groups)
    layout = (lambda t: t.contiguous(memory_format=torch.channels_last)) if channels_last else (lambda t: t)
    g = torch.Generator().manual_seed(0)
    x = layout(round_tf32(torch.randn(n, c, h, w_, generator=g)).cuda())
    wt = round_tf32(torch.randn(k, c // groups, r, s_, generator=g)).cuda()
    b = torch.randn(k, generator=g).cuda()
    gy = layout(round_tf32(_grad_output(x, wt, conf, torch.float32)))
    ref = _torch(x.double(), wt.double(), b.double(), conf, gy.double())
    mag = _torch(x.double().abs(), wt.double().abs(), b.double().abs(), conf, gy.double().abs())
    torch.backends.cudnn.allow_tf32 = True  # conftest restores it
    ours = _ours(x, wt, b, conf, gy)
    # grad weight: N*P*Q products, then at most one addition per chunk.
    terms = ((c // groups) * r * s_ + 1, (k // groups) * r * s_, 2 * (gy.numel() // k))
    for name, o, rf, mg, t in zip(NAMES, ours, ref, mag, terms):
        _tf32_bound_check(name, o, rf, mg, t)


def test_tf32_follows_allow_tf32_at_call_time():
    """The same call is exact FP32 with allow_tf32 False and TF32 with True,
    read at each call as nn.Conv2d reads it."""
    x, w, b, conf = _inputs(SHAPES[7], torch.float32, "cuda")
    ref = F.conv2d(x.double(), w.double(), b.double(), *conf)
    torch.backends.cudnn.allow_tf32 = False
    exact = ops.conv2d_forward(x, w, b, *conf)
    torch.backends.cudnn.allow_tf32 = True
    tf32 = ops.conv2d_forward(x, w, b, *conf)
    exact_err = (exact.double() - ref).abs().max().item()
    tf32_err = (tf32.double() - ref).abs().max().item()
    assert exact_err < 1e-3 and tf32_err > 4 * exact_err, (exact_err, tf32_err)
    rounded = F.conv2d(round_tf32(x).double(), round_tf32(w).double(), b.double(), *conf)
    assert (tf32.double() - rounded).abs().max().item() < 1e-3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_tensor_cores_channels_last_large_tile(dtype):
    """channels_last with C/G a multiple of 8: the 16-byte cp.async fetch,
    on the large tile."""
    x, w, b, conf = _inputs(SHAPES[7], dtype, "cuda")
    x = x.contiguous(memory_format=torch.channels_last)
    gy = _grad_output(x, w, conf, dtype).contiguous(memory_format=torch.channels_last)
    ref = _torch(x.double(), w.double(), b.double(), conf, gy.double())
    theirs = _torch(x, w, b, conf, gy)
    ours = _ours(x, w, b, conf, gy)
    eps = torch.finfo(dtype).eps
    for name, o, rf, t in zip(NAMES, ours, ref, theirs):
        err = (o.double() - rf).abs().max().item()
        torch_err = (t.double() - rf).abs().max().item()
        assert err <= 2 * torch_err + 4 * eps * rf.abs().max().item(), (name, err, torch_err)
    assert ours[0].is_contiguous(memory_format=torch.channels_last)


def _free_gib():
    free, _ = torch.cuda.mem_get_info()
    return free / 2**30


@pytest.mark.slow
def test_more_than_2_pow_31_elements_gemm():
    """16 x 11586 x 11586 half input (2^31 + 0.5M elements, 4 GiB): every
    input offset past 2^31 is computed in 64 bits by the implicit GEMMs."""
    if _free_gib() < 48:
        pytest.skip("needs 48 GiB of free GPU memory")
    torch.manual_seed(0)
    x = torch.randn(1, 16, 11586, 11586, device="cuda", dtype=torch.half)
    assert x.numel() > 2**31
    w = torch.randn(16, 16, 3, 3, device="cuda", dtype=torch.half) / 12
    conf = ([4, 4], [1, 1], [1, 1], 1)
    y = ops.conv2d_forward(x, w, None, *conf)
    ref = F.conv2d(x.float(), w.float(), None, 4, 1)
    torch.testing.assert_close(y.float(), ref, rtol=2e-2, atol=2e-2)
    gy = torch.randn_like(y)
    gx = ops.conv2d_backward_input(gy, w, list(x.shape), *conf)
    gx_ref = torch.nn.grad.conv2d_input(x.shape, w.float(), gy.float(), 4, 1)
    torch.testing.assert_close(gx.float(), gx_ref, rtol=2e-2, atol=2e-2)
    del gx, gx_ref
    gw = ops.conv2d_backward_weight(gy, x, list(w.shape), *conf)
    gw_ref = torch.nn.grad.conv2d_weight(x.float(), w.shape, gy.float(), 4, 1)
    torch.testing.assert_close(gw.float(), gw_ref, rtol=2e-2, atol=2e-2 * gw_ref.abs().max().item())


@pytest.mark.slow
def test_more_than_2_pow_31_elements_direct():
    """A depthwise layer on 2 x 32768 x 32769 half (just past 2^31
    elements): the direct kernels' flat index takes the 64-bit path."""
    if _free_gib() < 40:
        pytest.skip("needs 40 GiB of free GPU memory")
    torch.manual_seed(0)
    x = torch.randn(1, 2, 32768, 32769, device="cuda", dtype=torch.half)
    assert x.numel() > 2**31
    w = torch.randn(2, 1, 3, 3, device="cuda", dtype=torch.half) / 3
    b = torch.randn(2, device="cuda", dtype=torch.half)
    y = ops.conv2d_forward(x, w, b, [1, 1], [1, 1], [1, 1], 2)
    assert y.shape == x.shape
    # The first and last rows of each channel against torch on a crop.
    top = F.conv2d(x[:, :, :6].float(), w.float(), b.float(), 1, 1, 1, 2)[:, :, :4]
    bottom = F.conv2d(x[:, :, -6:].float(), w.float(), b.float(), 1, 1, 1, 2)[:, :, -4:]
    torch.testing.assert_close(y[:, :, :4].float(), top, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(y[:, :, -4:].float(), bottom, rtol=1e-2, atol=1e-2)
    gb = ops.conv2d_backward_bias(y)
    torch.testing.assert_close(gb.float(), y.float().sum((0, 2, 3)), rtol=1e-2, atol=1e-2 * y.numel() ** 0.5)
    del y
    gy = torch.ones_like(x)
    gw = ops.conv2d_backward_weight(gy, x, [2, 1, 3, 3], [1, 1], [1, 1], [1, 1], 2)
    # With grad_output all ones, dw[k][0][r][s] is the sum of the input window.
    centre = x.float().sum((0, 2, 3))
    torch.testing.assert_close(gw[:, 0, 1, 1].float(), centre, rtol=1e-2, atol=1e-2 * x.shape[2])
