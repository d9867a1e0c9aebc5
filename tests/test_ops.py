"""The registered ops themselves: opcheck (schema, fake kernel, autograd
registration), gradcheck of each op, double backward, and torch.compile."""
import pytest
import torch
from torch import nn

import conv_ext

ops = conv_ext.ops
CONF = ([2, 1], [1, 2], [1, 2], 2)  # stride, padding, dilation, groups


def sample(device, dtype=torch.float64, requires_grad=False, channels_last=False):
    x = torch.randn(2, 4, 7, 8, dtype=dtype, device=device)
    w = torch.randn(6, 2, 3, 2, dtype=dtype, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    b = torch.randn(6, dtype=dtype, device=device)
    y = ops.conv2d_forward(x, w, b, *CONF)
    gy = torch.randn_like(y)
    return [t.requires_grad_(requires_grad) for t in (x, w, b, gy)]


def op_calls(device, requires_grad=False, channels_last=False):
    x, w, b, gy = sample(device, requires_grad=requires_grad, channels_last=channels_last)
    return [
        (ops.conv2d_forward, (x, w, b, *CONF)),
        (ops.conv2d_forward, (x, w, None, *CONF)),
        (ops.conv2d_backward_input, (gy, w, list(x.shape), *CONF)),
        (ops.conv2d_backward_weight, (gy, x, list(w.shape), *CONF)),
        (ops.conv2d_backward_bias, (gy,)),
    ]


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck(device, requires_grad, channels_last):
    for op, args in op_calls(device, requires_grad, channels_last):
        torch.library.opcheck(op, args)


def test_gradcheck_each_op(device):
    for op, args in op_calls(device, requires_grad=True):
        differentiable = [a for a in args if isinstance(a, torch.Tensor)]

        def fn(*tensors, op=op, args=args):
            it = iter(tensors)
            return op(*[next(it) if isinstance(a, torch.Tensor) else a for a in args])

        assert torch.autograd.gradcheck(fn, differentiable)
        assert torch.autograd.gradgradcheck(fn, differentiable)


def test_double_backward_through_module(device):
    m = conv_ext.MyConv2d(4, 6, 3, stride=2, padding=1, groups=2).double().to(device)
    x = torch.randn(2, 4, 7, 8, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, w, b: m._conv_forward(x, w, b), (x, m.weight, m.bias))


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = conv_ext.MyConv2d(3, 8, 3, padding=1)
        self.c2 = conv_ext.MyConv2d(8, 8, 3, stride=2, padding=1, groups=2)
        self.c3 = conv_ext.MyConv2d(8, 4, 2, padding="same")

    def forward(self, x):
        return self.c3(torch.relu(self.c2(torch.relu(self.c1(x))))).mean()


def test_torch_compile_fullgraph(device):
    torch._dynamo.reset()
    net = SmallNet().to(device)
    x = torch.randn(2, 3, 12, 12, device=device)
    eager = net(x)
    eager.backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    compiled = torch.compile(net, fullgraph=True)
    out = compiled(x)
    out.backward()
    torch.testing.assert_close(out, eager)
    for p, g in zip(net.parameters(), grads):
        torch.testing.assert_close(p.grad, g)
