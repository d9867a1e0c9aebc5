"""Under torch.autocast, MyConv2d, conv_ext.conv2d and the ops run in the
precision nn.Conv2d would: inputs, weight and bias cast to the autocast
dtype, a result in that dtype, gradients back to float32 parameters."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import conv_ext

ops = conv_ext.ops
CONF = ([2, 1], [1, 2], [1, 2], 2)  # stride, padding, dilation, groups
KW = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)


@pytest.fixture(params=[torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def amp_dtype(request):
    return request.param


def pair(device, seed=0, **kw):
    """A MyConv2d and an nn.Conv2d with the same float32 parameters."""
    torch.manual_seed(seed)
    ours = conv_ext.MyConv2d(4, 6, 3, **kw).to(device)
    theirs = nn.Conv2d(4, 6, 3, **kw).to(device)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def assert_close_to_torch(ours, theirs, ref):
    """Low-precision rule: our error against the float64 reference at most
    twice torch's own, plus one rounding of the result."""
    assert ours.dtype == theirs.dtype
    ref = ref.double()
    torch_err = (theirs.double() - ref).abs().max().item()
    our_err = (ours.double() - ref).abs().max().item()
    floor = torch.finfo(ours.dtype).eps * ref.abs().max().item()
    assert our_err <= 2 * torch_err + floor, f"error {our_err:.3g}, torch's {torch_err:.3g}"


def reference(x, w, b, dtype, **kw):
    """float64 convolution of the values autocast hands the kernel."""
    cast = lambda t: None if t is None else t.to(dtype).double()  # noqa: E731
    return F.conv2d(cast(x), cast(w), cast(b), **kw)


def test_module_forward_and_backward_match_nn_conv2d(device, amp_dtype):
    ours, theirs = pair(device, **KW)
    x = torch.randn(3, 4, 9, 10, device=device)
    xo, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.autocast(device, dtype=amp_dtype):
        yo, yt = ours(xo), theirs(xt)
    assert yo.dtype == yt.dtype == amp_dtype
    assert yo.shape == yt.shape
    assert_close_to_torch(yo, yt, reference(x, ours.weight, ours.bias, amp_dtype, **KW))

    g = torch.randn_like(yt.float())
    (yo.float() * g).sum().backward()
    (yt.float() * g).sum().backward()
    # The float64 gradients of the values the kernels saw: grad_output
    # reaches the convolution as g cast to amp_dtype.
    leaves = [t.detach().to(amp_dtype).double().requires_grad_() for t in (x, ours.weight, ours.bias)]
    y64 = F.conv2d(*leaves, **KW)
    refs = torch.autograd.grad(y64, leaves, g.to(amp_dtype).double())
    for p_ours, p_theirs, ref in zip((xo, ours.weight, ours.bias), (xt, theirs.weight, theirs.bias), refs):
        assert p_ours.grad.dtype == p_theirs.grad.dtype == torch.float32
        assert_close_to_torch(p_ours.grad, p_theirs.grad, ref)


def test_functional_same_padding_and_unbatched(device, amp_dtype):
    x = torch.randn(4, 7, 8, device=device)
    w = torch.randn(6, 4, 2, 3, device=device)
    b = torch.randn(6, device=device)
    with torch.autocast(device, dtype=amp_dtype):
        yo = conv_ext.conv2d(x, w, b, padding="same", dilation=(2, 1))
        yt = F.conv2d(x, w, b, padding="same", dilation=(2, 1))
    assert yo.dtype == yt.dtype == amp_dtype
    assert_close_to_torch(yo, yt, reference(x, w, b, amp_dtype, padding="same", dilation=(2, 1)))


def test_ops_called_directly(device, amp_dtype):
    x = torch.randn(2, 4, 8, 9, device=device, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, device=device, requires_grad=True)
    b = torch.randn(6, device=device, requires_grad=True)
    with torch.autocast(device, dtype=amp_dtype):
        y = ops.conv2d_forward(x, w, b, *CONF)
        yt = F.conv2d(x, w, b, **KW)
    assert y.dtype == yt.dtype == amp_dtype
    assert_close_to_torch(y, yt, reference(x, w, b, amp_dtype, **KW))

    # The casts were recorded: gradients reach the float32 leaves as float32.
    y.float().sum().backward()
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == torch.float32

    gy = torch.randn(yt.shape, device=device)
    with torch.autocast(device, dtype=amp_dtype):
        gi = ops.conv2d_backward_input(gy, w, list(x.shape), *CONF)
        gw = ops.conv2d_backward_weight(gy, x, list(w.shape), *CONF)
        gb = ops.conv2d_backward_bias(gy)
    assert gi.dtype == gw.dtype == amp_dtype
    assert gb.dtype == torch.float32  # a reduction: runs in the dtype it is given
    ref_i = torch.nn.grad.conv2d_input(list(x.shape), w.to(amp_dtype).double(), gy.to(amp_dtype).double(), **KW)
    ref_w = torch.nn.grad.conv2d_weight(x.to(amp_dtype).double(), list(w.shape), gy.to(amp_dtype).double(), **KW)
    for ours, ref in [(gi, ref_i), (gw, ref_w)]:
        # One rounding of amp_dtype on a float32 sum of exact products.
        err = (ours.double() - ref).abs().max().item()
        assert err <= 2 * torch.finfo(amp_dtype).eps * ref.abs().max().item()


def test_float64_is_never_lowered(device, amp_dtype):
    x = torch.randn(1, 2, 5, 5, device=device, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, device=device, dtype=torch.float64)
    with torch.autocast(device, dtype=amp_dtype):
        y = conv_ext.conv2d(x, w)
        yo = ops.conv2d_forward(x, w, None, [1, 1], [0, 0], [1, 1], 1)
    assert y.dtype == yo.dtype == torch.float64
    torch.testing.assert_close(y, F.conv2d(x, w), rtol=1e-12, atol=1e-12)


def test_disabled_region_and_outside_run_in_float32(device, amp_dtype):
    ours, _ = pair(device)
    x = torch.randn(1, 4, 6, 6, device=device)
    with torch.autocast(device, dtype=amp_dtype):
        with torch.autocast(device, enabled=False):
            inner = ours(x)
    outer = ours(x)
    assert inner.dtype == outer.dtype == torch.float32
    torch.testing.assert_close(inner, outer, rtol=0, atol=0)


def test_autocast_of_another_device_leaves_cpu_alone():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with torch.autocast("cuda", dtype=torch.float16, enabled=torch.cuda.is_available()):
        assert conv_ext.conv2d(x, w).dtype == torch.float32
        assert ops.conv2d_forward(x, w, None, [1, 1], [0, 0], [1, 1], 1).dtype == torch.float32


def test_amp_training_steps_track_nn_conv2d(device, amp_dtype):
    """A few optimizer steps of a small conv net under autocast (with a
    GradScaler for float16, as AMP training does): the loss curves of
    MyConv2d and nn.Conv2d stay together."""
    torch.manual_seed(0)
    theirs = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2)).to(device)
    ours = conv_ext.replace_conv2d(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2))).to(device)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(8, 3, 12, 12, device=device)
    target = torch.randn(8, 4, 5, 5, device=device)
    losses = []
    for model in (ours, theirs):
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        scaler = torch.amp.GradScaler(device, enabled=amp_dtype == torch.float16 and device == "cuda")
        curve = []
        for _ in range(5):
            opt.zero_grad()
            with torch.autocast(device, dtype=amp_dtype):
                out = model(x)
                loss = F.mse_loss(out.float(), target)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            curve.append(loss.item())
        losses.append(curve)
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses[0][-1] < losses[0][0]
    for a, b in zip(*losses):
        assert abs(a - b) <= 0.05 * abs(b)


@pytest.mark.slow
def test_torch_compile_fullgraph_under_autocast(device, amp_dtype):
    """The autocast kernels trace: a compiled function with an autocast
    region around MyConv2d and a direct op call gives the eager result."""
    ours, _ = pair(device)
    x = torch.randn(2, 4, 8, 8, device=device)

    def fn(x, w):
        with torch.autocast(device, dtype=amp_dtype):
            return ours(x), ops.conv2d_forward(x, w, None, [1, 1], [1, 1], [1, 1], 1)

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True)
    for got, want in zip(compiled(x, ours.weight), fn(x, ours.weight)):
        assert got.dtype == want.dtype == amp_dtype
        torch.testing.assert_close(got, want, rtol=0, atol=0)
