"""The CUDA kernels at a transposed convolution's sizes, run on the CPU by the
emulator of tests/cuda_emulator/, against F.conv_transpose2d: conv2d's grad
input as the forward (a larger output than its grad_output, rows that only
output_padding reaches), conv2d's forward over that output as grad input, and
grad weight with grad_output and input exchanged. The same composition as
conv_ext/transpose.py, on every kernel family; tests/test_conv_transpose.py
runs the real thing on a GPU where one is present."""
import pytest
import torch
import torch.nn.functional as F

from test_cuda_emulated import ALGOS, emulated, pytestmark  # noqa: F401  (the skip switch applies here too)

# (N, C_in, H, W, C_out, R, S, stride, padding, output_padding, dilation, groups)
SHAPES = [
    (2, 4, 5, 4, 6, 3, 3, (2, 2), (1, 1), (1, 1), (1, 1), 2),
    (1, 6, 3, 4, 9, 4, 4, (2, 3), (1, 0), (0, 2), (1, 1), 3),
    (2, 3, 4, 4, 5, 3, 2, (1, 1), (0, 1), (1, 1), (2, 2), 1),  # output_padding >= stride, < dilation
    (1, 8, 3, 3, 8, 2, 2, (2, 2), (0, 0), (0, 0), (1, 1), 8),  # depthwise up-sampling
    (1, 20, 4, 5, 18, 3, 3, (2, 1), (1, 1), (1, 0), (1, 1), 1),
]


def _emulated_transposed(x, w, b, gy, stride, padding, output_padding, dilation, groups, algo):
    m = emulated()
    h, wd = x.shape[2:]
    extra = [op // s for op, s in zip(output_padding, stride)]
    xp = F.pad(x, [0, extra[1], 0, extra[0]])
    conf = (list(stride), list(padding), list(dilation), groups)
    y = m.backward_input(xp, w, list(gy.shape), *conf, algo) + b.view(1, -1, 1, 1)
    gx = m.forward(gy, w, None, *conf, algo)[:, :, :h, :wd]
    gw = m.backward_weight(xp, gy, list(w.shape), *conf, algo, -1)
    return y, gx, gw, m.backward_bias(gy)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("shape", SHAPES)
def test_float64_matches_conv_transpose2d(shape, algo):
    torch.manual_seed(0)
    n, c_in, h, w, c_out, r, s, stride, padding, output_padding, dilation, groups = shape
    x = torch.randn(n, c_in, h, w, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(c_in, c_out // groups, r, s, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, dtype=torch.float64, requires_grad=True)
    y_ref = F.conv_transpose2d(x, wt, b, stride, padding, output_padding, groups, dilation)
    gy = torch.randn_like(y_ref)
    ref = (y_ref, *torch.autograd.grad(y_ref, (x, wt, b), gy))
    got = _emulated_transposed(x.detach(), wt.detach(), b.detach(), gy, stride, padding, output_padding, dilation,
                               groups, algo)
    for name, g, r_ in zip(("output", "grad_input", "grad_weight", "grad_bias"), got, ref):
        assert g.shape == r_.shape, name
        torch.testing.assert_close(g, r_, rtol=1e-10, atol=1e-10, msg=name)
