"""Every check at the door: a bad call raises an error that names the
argument and says what was expected."""
import pytest
import torch

import conv_ext

ops = conv_ext.ops
F64 = dict(dtype=torch.float64)
x4, w4, b4 = torch.randn(1, 4, 6, 6, **F64), torch.randn(2, 4, 3, 3, **F64), torch.randn(2, **F64)
gy = torch.randn(1, 2, 4, 4, **F64)
ONE = ([1, 1], [0, 0], [1, 1], 1)


def fwd(x=x4, w=w4, b=b4, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    return ops.conv2d_forward(x, w, b, list(stride), list(padding), list(dilation), groups)


OP_CASES = [
    (lambda: fwd(x=torch.randn(4, 6, 6, **F64)), "expected input to be 4-D"),
    (lambda: fwd(w=torch.randn(2, 4, 3, **F64)), "expected weight to be 4-D"),
    (lambda: fwd(x=x4.float()), "expected input and weight to have the same dtype"),
    (lambda: fwd(x=x4.long(), w=w4.long(), b=None), "expected input to be float32, float64, float16 or bfloat16, got Long"),
    (lambda: fwd(b=b4.float()), "expected input and bias to have the same dtype"),
    (lambda: fwd(b=torch.randn(3, **F64)), r"expected bias of shape \[2\]"),
    (lambda: fwd(b=torch.randn(2, 1, **F64)), "expected bias to be 1-D"),
    (lambda: fwd(stride=(0, 1)), "expected stride to be > 0"),
    (lambda: fwd(dilation=(1, -1)), "expected dilation to be > 0"),
    (lambda: fwd(padding=(-1, 0)), "expected padding to be >= 0"),
    (lambda: fwd(groups=0), "expected groups > 0"),
    (lambda: fwd(groups=3), r"input channels \(4\) to be divisible by groups \(3\)"),
    (lambda: fwd(w=torch.randn(3, 2, 3, 3, **F64), b=None, groups=2), r"output channels \(3\) to be divisible by groups"),
    (lambda: fwd(w=torch.randn(2, 3, 3, 3, **F64)), "to have 4 input channels per group"),
    (lambda: fwd(w=torch.randn(2, 4, 7, 3, **F64)), r"kernel height \(7"),
    (lambda: fwd(dilation=(1, 4)), r"kernel width \(9 after dilation\)"),
    (lambda: fwd(padding=(2**62, 0)), "overflows int64"),
    (lambda: fwd(w=w4.to("meta")), "expected input and weight to be on the same device"),
    (lambda: fwd(x=torch.ones(1, 1, 1, 1, **F64).expand(1, 1, 1, 2**60), w=torch.ones(2, 1, 1, 1, **F64), b=None),
     r"output of shape \[1, 2, 1, 1152921504606846976\] is too large"),
    (lambda: ops.conv2d_backward_input(gy, w4, [1, 4, 6], *ONE), "expected input_size to have 4 values"),
    (lambda: ops.conv2d_backward_input(gy, w4, [1, 4, 7, 7], *ONE), r"expected grad_output of shape \[1, 2, 5, 5\]"),
    (lambda: ops.conv2d_backward_input(gy, w4, [1, 4, -6, 6], *ONE), "expected input sizes >= 0"),
    (lambda: ops.conv2d_backward_input(gy, w4, [2**40, 2**40, 6, 6], *ONE), "number of input elements overflows int64"),
    (lambda: ops.conv2d_backward_input(gy.float(), w4, [1, 4, 6, 6], *ONE), "grad_output and weight to have the same dtype"),
    (lambda: ops.conv2d_backward_weight(gy, x4, [2, 4, 3], *ONE), "expected weight_size to have 4 values"),
    (lambda: ops.conv2d_backward_weight(gy, x4, [2, 4, 0, 3], *ONE), "expected weight sizes > 0"),
    (lambda: ops.conv2d_backward_weight(gy[:, :1], x4, [2, 4, 3, 3], *ONE), "expected grad_output of shape"),
    (lambda: ops.conv2d_backward_bias(gy[0]), "expected grad_output to be 4-D"),
    (lambda: ops.conv2d_backward_bias(gy.int()), "expected grad_output to be float32"),
]


@pytest.mark.parametrize("call, match", OP_CASES)
def test_op_errors(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()


API_CASES = [
    (lambda: conv_ext.conv2d(x4.numpy(), w4), TypeError, "expected input to be a Tensor"),
    (lambda: conv_ext.conv2d(x4, w4, bias=[1.0, 2.0]), TypeError, "expected bias to be a Tensor or None"),
    (lambda: conv_ext.conv2d(x4, w4, stride=(1, 1, 1)), TypeError, "expected stride to be an int or a pair"),
    (lambda: conv_ext.conv2d(x4, w4, stride=1.5), TypeError, "expected stride to be an int or a pair"),
    (lambda: conv_ext.conv2d(x4, w4, dilation=0), ValueError, "expected dilation to be > 0"),
    (lambda: conv_ext.conv2d(x4, w4, padding=-1), ValueError, "expected padding to be >= 0"),
    (lambda: conv_ext.conv2d(x4, w4, padding="full"), ValueError, "expected padding to be 'valid', 'same'"),
    (lambda: conv_ext.conv2d(x4, w4, padding="same", stride=2), ValueError, "not supported for strided"),
    (lambda: conv_ext.conv2d(x4, w4, groups="2"), TypeError, "expected groups to be an int"),
    (lambda: conv_ext.conv2d(x4, w4, groups=0), ValueError, "expected groups > 0"),
    (lambda: conv_ext.conv2d(x4[0, 0], w4), RuntimeError, "expected 3-D .* or 4-D"),
    (lambda: conv_ext.conv2d(x4.to_sparse(), w4), RuntimeError, "expected input to be a dense .strided. tensor"),
    (lambda: conv_ext.MyConv2d(4, 2, 3, padding_mode="mirror"), ValueError, "padding_mode"),
    (lambda: conv_ext.MyConv2d(4, 2, 3, groups=3), ValueError, "in_channels must be divisible by groups"),
]


@pytest.mark.parametrize("call, error, match", API_CASES)
def test_api_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_errors_leave_autograd_usable():
    with pytest.raises(RuntimeError):
        fwd(groups=3)
    x = x4.clone().requires_grad_()
    conv_ext.conv2d(x, w4).sum().backward()
    assert x.grad is not None
