"""conv_ext.conv_transpose2d, MyConvTranspose2d and replace_conv2d on
transposed layers, against torch.nn.functional.conv_transpose2d and
nn.ConvTranspose2d: float64 tight, low precision within twice torch's own
error, gradcheck and gradgradcheck, opcheck of the ops at the transposed
convolution's sizes, torch.compile, autocast, and errors."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import conv_ext
from conv_ext import MyConv2d, MyConvTranspose2d, conv_transpose2d, replace_conv2d

ops = conv_ext.ops

# (stride, padding, output_padding, dilation, groups, kernel); each
# output_padding below its stride or, the last two, only below its dilation.
CONFIGS = [
    (1, 0, 0, 1, 1, (3, 3)),
    (2, 1, 1, 1, 1, (3, 3)),
    (2, 0, 0, 1, 1, (2, 2)),       # DCGAN / U-Net up-sampling: exact 2x
    ((2, 3), (1, 2), (1, 2), 1, 1, (3, 4)),
    (3, 2, 2, 2, 2, (3, 3)),
    (1, 1, 0, 2, 3, (3, 3)),
    (2, 0, 1, (1, 2), 3, (1, 1)),  # 1x1
    (1, 0, 1, 2, 1, (3, 3)),       # output_padding >= stride, < dilation
    ((1, 2), (0, 1), (2, 1), (3, 1), 1, (2, 3)),
    (4, 1, 3, 1, 6, (4, 4)),       # depthwise-like: one channel per group
]
IDS = [f"s{s}-p{p}-op{op}-d{d}-g{g}-k{k[0]}x{k[1]}" for s, p, op, d, g, k in CONFIGS]


def sample(device, dtype, groups, kernel, n=2, c_in=6, c_out=6, h=5, w=4, bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=gen, dtype=torch.float64).to(device, dtype)
    wt = torch.randn(c_in, c_out // groups, *kernel, generator=gen, dtype=torch.float64).to(device, dtype)
    b = torch.randn(c_out, generator=gen, dtype=torch.float64).to(device, dtype) if bias else None
    return x, wt, b


def output_and_grads(fn, x, w, b, seed=1, **conf):
    """fn's output and the gradients of <output, g> for a fixed random g."""
    leaves = [t.detach().requires_grad_() for t in (x, w, b) if t is not None]
    y = fn(*leaves[:2], leaves[2] if b is not None else None, **conf)
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(y)
    return y, torch.autograd.grad(y, leaves, g)


def kw(config):
    stride, padding, output_padding, dilation, groups, _ = config
    return dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)


def _conf(config, groups):
    return {**kw(config), "groups": groups}


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_float64_matches_torch(config, device):
    x, w, b = sample(device, torch.float64, config[4], config[5])
    y_ref, g_ref = output_and_grads(F.conv_transpose2d, x, w, b, **kw(config))
    y, g = output_and_grads(conv_transpose2d, x, w, b, **kw(config))
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    for name, ours, ref in zip(("grad_input", "grad_weight", "grad_bias"), g, g_ref):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10, msg=name)


def assert_within_twice_torch(ours, theirs, ref, name):
    """Low-precision rule: our error against the float64 reference at most
    twice torch's own, plus a floor of a few roundings of the result."""
    ref = ref.double()
    scale = ref.abs().max().item() if ref.numel() else 0.0
    torch_err = (theirs.double() - ref).abs().max().item() if ref.numel() else 0.0
    our_err = (ours.double() - ref).abs().max().item() if ref.numel() else 0.0
    bound = 2 * torch_err + 4 * torch.finfo(ours.dtype).eps * scale
    assert our_err <= bound, f"{name}: error {our_err:.3g} > 2x torch's {torch_err:.3g} (+floor)"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("config", CONFIGS[1:6], ids=IDS[1:6])
def test_low_precision_within_twice_torchs_error(config, dtype, device):
    x, w, b = sample(device, dtype, config[4], config[5], c_in=12, c_out=12, h=7, w=6)
    ref_y, ref_g = output_and_grads(F.conv_transpose2d, x.double(), w.double(), b.double(), **kw(config))
    t_y, t_g = output_and_grads(F.conv_transpose2d, x, w, b, **kw(config))
    o_y, o_g = output_and_grads(conv_transpose2d, x, w, b, **kw(config))
    assert o_y.dtype == t_y.dtype == dtype
    for name, o, t, r in zip(("output", "grad_input", "grad_weight", "grad_bias"),
                             (o_y, *o_g), (t_y, *t_g), (ref_y, *ref_g)):
        assert_within_twice_torch(o, t, r, name)


@pytest.mark.parametrize("x_cl,w_cl", [(True, False), (False, True), (True, True)])
def test_channels_last(x_cl, w_cl, device):
    x, w, b = sample(device, torch.float64, 2, (3, 3))
    cl = torch.channels_last
    x = x.contiguous(memory_format=cl) if x_cl else x
    w = w.contiguous(memory_format=cl) if w_cl else w
    for config in (CONFIGS[1], CONFIGS[7]):  # the second zero-pads x on the way
        y_ref, g_ref = output_and_grads(F.conv_transpose2d, x, w, b, **_conf(config, 2))
        y, g = output_and_grads(conv_transpose2d, x, w, b, **_conf(config, 2))
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
        for ours, ref in zip(g, g_ref):
            torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("x_cl,w_cl", [(False, False), (True, False), (False, True), (True, True)])
def test_output_memory_format_matches_torch(x_cl, w_cl, device):
    # float32, as for conv2d: cuDNN answers contiguous for float64 whatever
    # the inputs' format. Configurations cuDNN takes (output_padding below the
    # stride): torch's fallback kernels have rules of their own.
    x, w, b = sample(device, torch.float32, 2, (3, 3))
    x = x.contiguous(memory_format=torch.channels_last) if x_cl else x
    w = w.contiguous(memory_format=torch.channels_last) if w_cl else w
    for config in (CONFIGS[1], CONFIGS[4]):
        ours, ref = conv_transpose2d(x, w, b, **_conf(config, 2)), F.conv_transpose2d(x, w, b, **_conf(config, 2))
        for fmt in (torch.contiguous_format, torch.channels_last):
            assert ours.is_contiguous(memory_format=fmt) == ref.is_contiguous(memory_format=fmt)


def test_non_contiguous_input(device):
    x, w, b = sample(device, torch.float64, 1, (3, 3), w=9)
    x = x[:, :, :, ::2]  # every other column: a strided view
    assert not x.is_contiguous()
    torch.testing.assert_close(conv_transpose2d(x, w, b, 2, 1, 1), F.conv_transpose2d(x, w, b, 2, 1, 1),
                               rtol=1e-10, atol=1e-10)


def test_batch_zero(device):
    x, w, b = sample(device, torch.float64, 2, (3, 3), n=0)
    y_ref = F.conv_transpose2d(x, w, b, 2, 1, 1, 2)
    x.requires_grad_()
    y = conv_transpose2d(x, w, b, 2, 1, 1, 2)
    assert y.shape == y_ref.shape == (0, 6, 10, 8)
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_unbatched(device):
    x, w, b = sample(device, torch.float64, 3, (2, 3), n=1)
    x = x[0]
    y_ref, g_ref = output_and_grads(F.conv_transpose2d, x, w, b, stride=2, padding=1, groups=3)
    y, g = output_and_grads(conv_transpose2d, x, w, b, stride=2, padding=1, groups=3)
    assert y.shape == y_ref.shape and y.dim() == 3
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    for ours, ref in zip(g, g_ref):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_every_argument_form():
    x, w, _ = sample("cpu", torch.float64, 1, (3, 3))
    for conf in [dict(stride=[2, 1]), dict(padding=(1, 0)), dict(dilation=2), dict(output_padding=(1, 0), stride=2),
                 dict()]:
        torch.testing.assert_close(conv_transpose2d(x, w, **conf), F.conv_transpose2d(x, w, **conf))
    # Positional, in F.conv_transpose2d's order: ..., output_padding, groups, dilation.
    torch.testing.assert_close(conv_transpose2d(x, w, None, 2, 1, 1, 2, 1), F.conv_transpose2d(x, w, None, 2, 1, 1, 2, 1))


@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[4], CONFIGS[7]], ids=[IDS[1], IDS[4], IDS[7]])
def test_gradcheck_and_gradgradcheck(config, device):
    x, w, b = sample(device, torch.float64, config[4], config[5], c_in=6, c_out=3 * config[4], h=3, w=3, n=1)
    leaves = [t.requires_grad_() for t in (x, w, b)]

    def fn(x, w, b):
        return conv_transpose2d(x, w, b, **kw(config))

    assert torch.autograd.gradcheck(fn, leaves)
    assert torch.autograd.gradgradcheck(fn, leaves)


def test_double_backward_with_a_modules_parameters(device):
    m = MyConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2).double().to(device)
    x = torch.randn(1, 4, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, w, b: conv_transpose2d(x, w, b, 2, 1, 1, 2), (x, m.weight, m.bias))
    # and through the module's forward, output_size and all
    assert torch.autograd.gradgradcheck(lambda x: m(x, output_size=[6, 7]), (x,))


@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck_at_transposed_sizes(channels_last, device):
    """The three ops the transposed convolution calls, at the sizes it calls
    them with: conv2d_backward_input producing an output larger than its
    grad_output (stride 2, output_padding 1), conv2d_forward on that output,
    conv2d_backward_weight with grad_output and input exchanged."""
    x, w, _ = sample(device, torch.float64, 2, (3, 3), h=4, w=3)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    conf = ([2, 2], [1, 1], [1, 1], 2)
    out_size = [2, 6, 8, 6]  # (4 - 1) * 2 - 2 + 2 + 1 + 1, (3 - 1) * 2 - 2 + 2 + 1 + 1
    gy = torch.randn(out_size, dtype=torch.float64, device=device)
    for requires_grad in (False, True):
        args = [t.detach().requires_grad_(requires_grad) for t in (x, w, gy)]
        xa, wa, gya = args
        torch.library.opcheck(ops.conv2d_backward_input, (xa, wa, out_size, *conf))
        torch.library.opcheck(ops.conv2d_forward, (gya, wa, None, *conf))
        torch.library.opcheck(ops.conv2d_backward_weight, (xa, gya, list(w.shape), *conf))
        torch.library.opcheck(ops.conv2d_backward_bias, (gya,))


class UNetish(nn.Module):
    """Down by a strided conv, up by a transposed conv, a skip connection,
    and a DCGAN-style 4x4 stride-2 up-sampling head."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(3, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.fuse = nn.Conv2d(16, 8, 3, padding=1)
        self.head = nn.ConvTranspose2d(8, 2, 4, stride=2, padding=1, bias=False)

    def forward(self, x):
        e = torch.relu(self.enc(x))
        u = torch.relu(self.up(torch.relu(self.down(e)), output_size=e.shape))
        return self.head(torch.relu(self.fuse(torch.cat([e, u], 1))))


def test_replace_conv2d_swaps_both_and_trains_identically():
    torch.manual_seed(0)
    x, target = torch.randn(4, 3, 10, 10), torch.randn(4, 2, 20, 20)
    ref = UNetish()
    ours = UNetish()
    ours.load_state_dict(ref.state_dict())
    opt = torch.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9)  # built before the swap
    assert replace_conv2d(ours) is ours
    assert sum(type(m) is MyConvTranspose2d for m in ours.modules()) == 2
    assert sum(type(m) is MyConv2d for m in ours.modules()) == 3
    assert not any(type(m) in (nn.Conv2d, nn.ConvTranspose2d) for m in ours.modules())
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    for _ in range(4):
        losses = []
        for model, o in ((ref, ref_opt), (ours, opt)):
            o.zero_grad()
            loss = F.mse_loss(model(x), target)
            loss.backward()
            o.step()
            losses.append(loss.item())
        assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_replace_leaves_subclasses_and_swaps_a_bare_layer():
    class Custom(nn.ConvTranspose2d):
        pass

    model = nn.Sequential(Custom(2, 2, 3), nn.ConvTranspose2d(2, 2, 3))
    replace_conv2d(model)
    assert type(model[0]) is Custom and type(model[1]) is MyConvTranspose2d
    bare = nn.ConvTranspose2d(2, 3, 3)
    swapped = replace_conv2d(bare)
    assert type(swapped) is MyConvTranspose2d and swapped.weight is bare.weight


def test_is_a_conv_transpose2d_with_its_defaults_and_repr():
    args = (3, 8, 5)
    conf = dict(stride=2, padding=2, output_padding=1, bias=False, dilation=1)
    torch.manual_seed(1)
    ref = nn.ConvTranspose2d(*args, **conf)
    torch.manual_seed(1)
    ours = MyConvTranspose2d(*args, **conf)
    assert isinstance(ours, nn.ConvTranspose2d)
    assert repr(ours) == repr(ref).replace("ConvTranspose2d", "MyConvTranspose2d")
    assert list(ours.state_dict()) == list(ref.state_dict())
    torch.testing.assert_close(ours.weight, ref.weight)  # same initialisation
    back = nn.ConvTranspose2d(*args, **conf)
    back.load_state_dict(ours.state_dict())
    torch.testing.assert_close(back.weight, ref.weight)


@pytest.mark.parametrize("output_size", [None, [9, 10], [2, 6, 10, 9], torch.Size([2, 6, 10, 10])])
def test_module_matches_nn_conv_transpose2d_and_honours_output_size(output_size, device):
    torch.manual_seed(0)
    ref = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2).double().to(device)
    ours = MyConvTranspose2d.from_conv_transpose2d(ref)
    assert ours.weight is ref.weight and ours.bias is ref.bias
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, device=device, requires_grad=True)
    y_ref, y = ref(x, output_size=output_size), ours(x, output_size=output_size)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad(y, [x, *ours.parameters()], g),
                    torch.autograd.grad(y_ref, [x, *ref.parameters()], g)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_module_errors_as_torch():
    m = MyConvTranspose2d(4, 6, 3, stride=2)
    with pytest.raises(ValueError, match="requested an output size"):
        m(torch.randn(1, 4, 5, 5), output_size=[13, 13])
    with pytest.raises(ValueError, match="zeros.* padding mode"):
        MyConvTranspose2d(4, 6, 3, padding_mode="reflect")
    with pytest.raises(TypeError, match="expected an nn.ConvTranspose2d"):
        MyConvTranspose2d.from_conv_transpose2d(nn.Conv2d(2, 2, 2))


@pytest.mark.parametrize("channels_last", [False, True])
def test_torch_compile_fullgraph(channels_last, device):
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = UNetish().to(device)
    replace_conv2d(net)
    x = torch.randn(2, 3, 8, 8, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    eager = net(x).square().mean()
    eager.backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    compiled = torch.compile(lambda x: net(x).square().mean(), fullgraph=True)
    out = compiled(x)
    out.backward()
    torch.testing.assert_close(out, eager)
    for p, g in zip(net.parameters(), grads):
        torch.testing.assert_close(p.grad, g)


def test_torch_compile_dynamic_shapes_and_output_size():
    """Sizes that change between calls are traced as symbols: the output size
    (and output_size's output_padding) is then computed from them."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    m = MyConvTranspose2d(4, 6, 3, stride=2, padding=1)
    f = torch.compile(lambda x: m(x, output_size=[2 * x.shape[2], 2 * x.shape[3]]), dynamic=True, fullgraph=True)
    for n, h, w in ((2, 4, 5), (3, 6, 4)):
        x = torch.randn(n, 4, h, w)
        y = f(x)
        assert y.shape == (n, 6, 2 * h, 2 * w)
        torch.testing.assert_close(y, F.conv_transpose2d(x, m.weight, m.bias, 2, 1, 1))


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_runs_in_the_autocast_dtype_like_torch(amp_dtype, device):
    conf = dict(stride=2, padding=1, output_padding=1, groups=2)
    torch.manual_seed(0)
    theirs = nn.ConvTranspose2d(4, 6, 3, **conf).to(device)
    ours = MyConvTranspose2d(4, 6, 3, **conf).to(device)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 4, 6, 5, device=device)
    xo, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.autocast(device, dtype=amp_dtype):
        yo, yt = ours(xo), theirs(xt)
    assert yo.dtype == yt.dtype == amp_dtype

    # The float64 results of the values the kernels saw: the autocast casts
    # of x, weight and bias, and g cast to amp_dtype as grad_output.
    leaves = [t.detach().to(amp_dtype).double().requires_grad_() for t in (x, theirs.weight, theirs.bias)]
    y64 = F.conv_transpose2d(*leaves, **conf)
    assert_within_twice_torch(yo, yt, y64, "output")
    g = torch.randn(yt.shape, device=device)
    refs = torch.autograd.grad(y64, leaves, g.to(amp_dtype).double())
    (yo.float() * g).sum().backward()
    (yt.float() * g).sum().backward()
    for name, a, b, ref in (("grad_input", xo, xt, refs[0]), ("grad_weight", ours.weight, theirs.weight, refs[1]),
                            ("grad_bias", ours.bias, theirs.bias, refs[2])):
        assert a.grad.dtype == b.grad.dtype == torch.float32
        assert_within_twice_torch(a.grad, b.grad, ref, name)


def test_float64_is_never_lowered_under_autocast(device):
    x, w, b = sample(device, torch.float64, 1, (3, 3))
    with torch.autocast(device, dtype=torch.bfloat16):
        y = conv_transpose2d(x, w, b, 2)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, F.conv_transpose2d(x, w, b, 2), rtol=1e-12, atol=1e-12)


ERRORS = [
    (dict(stride=1, output_padding=1), RuntimeError, "output padding must be smaller than either stride or dilation"),
    (dict(stride=2, output_padding=(0, 2)), RuntimeError, "output padding must be smaller"),
    (dict(stride=0), RuntimeError, "expected stride to be > 0"),
    (dict(padding=-1), RuntimeError, "expected padding to be >= 0"),
    (dict(output_padding=-1), RuntimeError, "expected output_padding to be >= 0"),
    (dict(dilation=0), RuntimeError, "expected dilation to be > 0"),
    (dict(padding=3), RuntimeError, "output height would be 0"),
    (dict(stride=(1, 2, 3)), RuntimeError, "expected stride to have 2 values"),
    (dict(dilation=1.5), TypeError, "expected dilation to be an int or a pair"),
    (dict(padding="same"), TypeError, "expected padding to be an int or a pair"),
    (dict(groups=4), RuntimeError, r"weight's input channels \(6\) to be divisible by groups \(4\)"),
    (dict(groups=0), RuntimeError, "expected groups > 0"),
]


@pytest.mark.parametrize("conf,exc,message", ERRORS, ids=[str(e[0]) for e in ERRORS])
def test_bad_arguments_raise_like_torch(conf, exc, message):
    # float64: torch's oneDNN float32 path returns an empty output where its
    # own shape check (and ours) rejects an output extent of 0.
    x, w, _ = sample("cpu", torch.float64, 1, (2, 2), h=5, w=5)
    with pytest.raises(exc):
        F.conv_transpose2d(x, w, **conf)  # torch rejects it too
    with pytest.raises(exc, match=message):
        conv_transpose2d(x, w, **conf)


def test_bad_tensors_raise_naming_them():
    x, w, b = sample("cpu", torch.float32, 1, (3, 3))
    cases = [
        ((x[:, :4], w, None), "expected input with 6 channels"),
        ((x.unsqueeze(0), w, None), "expected 3-D .* or 4-D"),
        ((x, w[0], None), "expected 4-D weight"),
        ((x, w, b[:4]), r"expected bias of shape \(6,\)"),
        ((x, w.double(), None), "expected input and weight to have the same dtype"),
        ((x[:, :, :0], w, None), "nonzero height and width"),
    ]
    for args, message in cases:
        with pytest.raises(RuntimeError):
            F.conv_transpose2d(*args)
        with pytest.raises(RuntimeError, match=message):
            conv_transpose2d(*args)
    with pytest.raises(TypeError, match="expected weight to be a Tensor"):
        conv_transpose2d(x, w.tolist())
