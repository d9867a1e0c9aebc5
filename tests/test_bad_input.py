"""A catalogue of malformed calls, each run in a child process so that a
crash (segfault, abort, hang) fails its case instead of the whole run.

Every call must raise RuntimeError, ValueError or TypeError (as torch does:
ValueError/TypeError for bad Python arguments, RuntimeError from the ops)
with a message naming the argument at fault. The children are forked from a
forkserver that has imported conv_ext once (it never runs a kernel, so no
OpenMP pool is forked), which keeps ~50 isolated cases to a few seconds.
"""
import multiprocessing as mp
import re

import pytest
import torch

CUDA = torch.cuda.is_available()

# Shared by every case: small float32 CPU tensors and a valid configuration
# (input 1x4x6x6, weight 2x4x3x3, bias 2, output 1x2x4x4).
PREAMBLE = """
import numpy as np
import torch
from torch import nn
import conv_ext
ops = conv_ext.ops
cs = conv_ext.cs231n
x = torch.randn(1, 4, 6, 6)
w = torch.randn(2, 4, 3, 3)
b = torch.randn(2)
gy = torch.randn(1, 2, 4, 4)
C = ([1, 1], [0, 0], [1, 1], 1)  # stride, padding, dilation, groups
def fwd(x=x, w=w, b=b, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    return ops.conv2d_forward(x, w, b, list(stride), list(padding), list(dilation), groups)
def big(*shape):
    # A tensor of any virtual size backed by one element (stride 0).
    return torch.zeros(1).expand(*shape)
"""

R, V, T = RuntimeError, ValueError, TypeError

# id: (call, exception, regex the message must match: it names the argument)
CASES = {
    # ---- conv2d_forward: tensors
    "fwd-input-3d": ("fwd(x=x[0])", R, r"expected input to be 4-D"),
    "fwd-weight-5d": ("fwd(w=w[None])", R, r"expected weight to be 4-D"),
    "fwd-input-none": ("ops.conv2d_forward(None, w, b, *C)", R, r"expected input to be a tensor, got None"),
    "fwd-dtype-mismatch": ("fwd(x=x.double())", R, r"input and weight to have the same dtype, got Double and Float"),
    "fwd-bias-dtype": ("fwd(b=b.half())", R, r"input and bias to have the same dtype"),
    "fwd-int-tensors": ("fwd(x=x.int(), w=w.int(), b=None)", R, r"expected input to be float32, .*got Int"),
    "fwd-complex": ("fwd(x=x.cfloat(), w=w.cfloat(), b=None)", R, r"expected input to be float32, .*got ComplexFloat"),
    "fwd-bool-weight": ("fwd(x=x.bool(), w=w.bool(), b=None)", R, r"expected input to be float32, .*got Bool"),
    "fwd-weight-meta": ("fwd(w=w.to('meta'))", R, r"input and weight to be on the same device, got cpu and meta"),
    "fwd-input-meta": ("fwd(x=x.to('meta'))", R, r"input and weight to be on the same device, got meta and cpu"),
    "fwd-bias-meta": ("fwd(b=b.to('meta'))", R, r"input and bias to be on the same device"),
    "fwd-bias-shape": ("fwd(b=torch.randn(3))", R, r"expected bias of shape \[2\]"),
    "fwd-bias-2d": ("fwd(b=b[None])", R, r"expected bias to be 1-D"),
    # ---- conv2d_forward: hyper-parameters
    "fwd-negative-padding": ("fwd(padding=(0, -1))", R, r"expected padding to be >= 0"),
    "fwd-zero-stride": ("fwd(stride=(0, 1))", R, r"expected stride to be > 0"),
    "fwd-negative-dilation": ("fwd(dilation=(-2, 1))", R, r"expected dilation to be > 0"),
    "fwd-stride-3-values": ("fwd(stride=(1, 1, 1))", R, r"expected stride to have 2 values, got 3"),
    "fwd-stride-float": ("ops.conv2d_forward(x, w, b, [1.5, 1], [0, 0], [1, 1], 1)", R, r"argument 'stride'"),
    "fwd-groups-zero": ("fwd(groups=0)", R, r"expected groups > 0, got 0"),
    "fwd-groups-negative": ("fwd(groups=-2)", R, r"expected groups > 0, got -2"),
    "fwd-groups-not-dividing": ("fwd(groups=3)", R, r"input channels \(4\) to be divisible by groups \(3\)"),
    "fwd-weight-channels": ("fwd(w=torch.randn(2, 3, 3, 3))", R, r"weight .* to have 4 input channels per group"),
    "fwd-kernel-larger-than-padded-input": ("fwd(w=torch.randn(2, 4, 9, 3), padding=(1, 1))", R,
                                            r"kernel height \(9 after dilation\) can't be greater than the padded input height \(8\)"),
    "fwd-dilated-kernel-too-wide": ("fwd(dilation=(1, 4))", R, r"kernel width \(9 after dilation\)"),
    "fwd-huge-padding-overflow": ("fwd(padding=(2**62, 0))", R, r"padded height .* overflows int64 .*padding 4611686018427387904"),
    "fwd-huge-dilation-overflow": ("fwd(dilation=(1, 2**62))", R, r"dilated kernel width overflows int64"),
    "fwd-output-elements-overflow": ("fwd(x=big(2**31, 1, 2**15, 1), w=big(2**31, 1, 1, 1), b=None)", R,
                                     r"number of output elements overflows int64"),
    # ---- conv2d_backward_input
    "bi-input-size-3": ("ops.conv2d_backward_input(gy, w, [1, 4, 6], *C)", R, r"expected input_size to have 4 values, got 3"),
    "bi-input-size-negative": ("ops.conv2d_backward_input(gy, w, [1, 4, -6, 6], *C)", R, r"expected input sizes >= 0"),
    "bi-input-size-overflow": ("ops.conv2d_backward_input(gy, w, [2**40, 2**40, 6, 6], *C)", R,
                               r"number of input elements overflows int64"),
    "bi-grad-output-shape": ("ops.conv2d_backward_input(gy, w, [1, 4, 7, 7], *C)", R,
                             r"expected grad_output of shape \[1, 2, 5, 5\] for this convolution, got \[1, 2, 4, 4\]"),
    "bi-grad-output-3d": ("ops.conv2d_backward_input(gy[0], w, [1, 4, 6, 6], *C)", R, r"expected grad_output to be 4-D"),
    "bi-dtype-mismatch": ("ops.conv2d_backward_input(gy.double(), w, [1, 4, 6, 6], *C)", R,
                          r"grad_output and weight to have the same dtype"),
    "bi-grad-output-meta": ("ops.conv2d_backward_input(gy.to('meta'), w, [1, 4, 6, 6], *C)", R,
                            r"grad_output and weight to be on the same device"),
    "bi-groups-not-dividing": ("ops.conv2d_backward_input(gy, w, [1, 4, 6, 6], [1, 1], [0, 0], [1, 1], 3)", R,
                               r"divisible by groups \(3\)"),
    # ---- conv2d_backward_weight
    "bw-weight-size-5": ("ops.conv2d_backward_weight(gy, x, [2, 4, 3, 3, 1], *C)", R, r"expected weight_size to have 4 values, got 5"),
    "bw-weight-size-zero": ("ops.conv2d_backward_weight(gy, x, [2, 4, 0, 3], *C)", R, r"expected weight sizes > 0"),
    "bw-weight-size-overflow": ("ops.conv2d_backward_weight(gy, x, [2**62, 4, 3, 3], *C)", R,
                                r"number of weight elements overflows int64"),
    "bw-grad-output-channels": ("ops.conv2d_backward_weight(gy[:, :1], x, [2, 4, 3, 3], *C)", R,
                                r"expected grad_output of shape \[1, 2, 4, 4\]"),
    "bw-int-input": ("ops.conv2d_backward_weight(gy, x.int(), [2, 4, 3, 3], *C)", R, r"expected input to be float32, .*got Int"),
    "bw-input-meta": ("ops.conv2d_backward_weight(gy, x.to('meta'), [2, 4, 3, 3], *C)", R,
                      r"grad_output and input to be on the same device"),
    # ---- conv2d_backward_bias
    "bb-grad-output-2d": ("ops.conv2d_backward_bias(gy[0, 0])", R, r"expected grad_output to be 4-D"),
    "bb-grad-output-long": ("ops.conv2d_backward_bias(gy.long())", R, r"expected grad_output to be float32, .*got Long"),
    # ---- conv_ext.conv2d
    "conv2d-input-list": ("conv_ext.conv2d(x.tolist(), w)", T, r"expected input to be a Tensor, got list"),
    "conv2d-weight-numpy": ("conv_ext.conv2d(x, w.numpy())", T, r"expected weight to be a Tensor, got ndarray"),
    "conv2d-input-5d": ("conv_ext.conv2d(x[None], w)", R, r"expected 3-D .* or 4-D .* input, got input of shape \(1, 1, 4, 6, 6\)"),
    "conv2d-unbatched-channels": ("conv_ext.conv2d(torch.randn(3, 6, 6), w)", R, r"weight .* to have 3 input channels per group"),
    "conv2d-stride-zero": ("conv_ext.conv2d(x, w, stride=0)", V, r"expected stride to be > 0"),
    "conv2d-stride-bool": ("conv_ext.conv2d(x, w, stride=True)", T, r"expected stride to be an int or a pair"),
    "conv2d-dilation-3-values": ("conv_ext.conv2d(x, w, dilation=(1, 1, 1))", T, r"expected dilation to be an int or a pair"),
    "conv2d-padding-negative": ("conv_ext.conv2d(x, w, padding=(1, -1))", V, r"expected padding to be >= 0"),
    "conv2d-padding-string": ("conv_ext.conv2d(x, w, padding='full')", V, r"expected padding to be 'valid', 'same'"),
    "conv2d-same-strided": ("conv_ext.conv2d(x, w, padding='same', stride=2)", V, r"padding='same' is not supported for strided"),
    "conv2d-groups-float": ("conv_ext.conv2d(x, w, groups=1.0)", T, r"expected groups to be an int"),
    "conv2d-long-tensors": ("conv_ext.conv2d(x.long(), w.long())", R, r"expected input to be float32, .*got Long"),
    # ---- MyConv2d
    "module-groups": ("conv_ext.MyConv2d(4, 2, 3, groups=3)", V, r"in_channels must be divisible by groups"),
    "module-padding-mode": ("conv_ext.MyConv2d(4, 2, 3, padding_mode='mirror')", V, r"padding_mode"),
    "module-padding-string": ("conv_ext.MyConv2d(4, 2, 3, padding='full')", V, r"padding string 'full'"),
    "module-same-strided": ("conv_ext.MyConv2d(4, 2, 3, padding='same', stride=2)", V, r"padding='same'"),
    "module-wrong-input-channels": ("conv_ext.MyConv2d(3, 2, 3)(x)", R, r"weight .* to have 4 input channels per group .* got 3"),
    "module-kernel-zero": ("conv_ext.MyConv2d(4, 2, 0)(x)", R, r"expected weight sizes > 0"),
    "module-input-2d": ("conv_ext.MyConv2d(4, 2, 3)(x[0, 0])", R, r"expected 3-D .* or 4-D .* input"),
    "from-conv2d-linear": ("conv_ext.MyConv2d.from_conv2d(nn.Linear(2, 2))", T, r"from_conv2d: expected an nn.Conv2d, got Linear"),
    # ---- cs231n
    "cs231n-missing-pad": ("cs.conv_forward(x.numpy(), w.numpy(), b.numpy(), {'stride': 1})", V, r"conv_param is missing 'pad'"),
    "cs231n-missing-stride": ("cs.conv_forward(x.numpy(), w.numpy(), b.numpy(), {'pad': 1})", V, r"conv_param is missing 'stride'"),
    "cs231n-float-stride": ("cs.conv_forward(x.numpy(), w.numpy(), b.numpy(), {'stride': 1.0, 'pad': 0})", T,
                            r"conv_param\['stride'\] to be an int"),
    "cs231n-negative-pad": ("cs.conv_forward(x.numpy(), w.numpy(), b.numpy(), {'stride': 1, 'pad': -1})", V,
                            r"conv_param\['pad'\] >= 0"),
    "cs231n-param-list": ("cs.conv_forward(x.numpy(), w.numpy(), b.numpy(), [1, 0])", T, r"expected conv_param to be a dict"),
    "cs231n-x-list": ("cs.conv_forward(x.tolist(), w.numpy(), b.numpy(), {'stride': 1, 'pad': 0})", T,
                      r"expected x to be a numpy array or a torch.Tensor"),
    "cs231n-not-divisible": ("cs.conv_forward(x.numpy(), w.numpy(), b.numpy(), {'stride': 2, 'pad': 0})", V,
                             r"not divisible by stride 2"),
    "cs231n-bad-cache": ("cs.conv_backward(gy.numpy(), (1, 2))", V, r"expected cache to be the \(x, w, b, conv_param\)"),
    "cs231n-dout-shape": ("cs.conv_backward(np.zeros((1, 2, 3, 3), np.float32), "
                          "(x.numpy(), w.numpy(), b.numpy(), {'stride': 1, 'pad': 0}))", V, r"expected dout of shape \(1, 2, 4, 4\)"),
}

CUDA_CASES = {
    "fwd-cpu-input-cuda-weight": ("fwd(w=w.cuda())", R, r"input and weight to be on the same device, got cpu and cuda"),
    "bi-cuda-grad-output-cpu-weight": ("ops.conv2d_backward_input(gy.cuda(), w, [1, 4, 6, 6], *C)", R,
                                       r"grad_output and weight to be on the same device"),
    "bw-cuda-input-size-overflow": ("ops.conv2d_backward_weight(gy.cuda(), x.cuda(), [2**62, 4, 3, 3], *C)", R,
                                    r"number of weight elements overflows int64"),
}

PROGRAM = """
{preamble}
try:
    {call}
    outcome = None
except BaseException as e:
    outcome = (type(e).__name__, [c.__name__ for c in type(e).__mro__], str(e))
results.put(outcome)
"""


@pytest.fixture(scope="module")
def ctx():
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["numpy", "torch", "conv_ext"])
    return context


def run_isolated(ctx, call, timeout=120):
    """Runs `call` after PREAMBLE in a forked child; returns its exit code and
    (exception name, exception MRO names, message), or None if it returned."""
    results = ctx.Queue()
    program = PROGRAM.format(preamble=PREAMBLE, call=call)
    child = ctx.Process(target=exec, args=(program, {"__name__": "__case__", "results": results}))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail(f"{call!r} hung for {timeout} s")
    outcome = results.get(timeout=10) if child.exitcode == 0 else "crashed"
    return child.exitcode, outcome


def check(ctx, call, error, match):
    code, outcome = run_isolated(ctx, call)
    assert code == 0, f"{call!r} crashed the process (exit code {code})"
    assert outcome is not None, f"{call!r} raised nothing, expected {error.__name__}"
    name, mro, message = outcome
    assert error.__name__ in mro, f"{call!r} raised {name}: {message}; expected {error.__name__}"
    assert re.search(match, message), f"{call!r}: message {message!r} does not match {match!r}"


def test_catalogue_is_large_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES)
def test_bad_input(ctx, case):
    check(ctx, *CASES[case])


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("case", CUDA_CASES)
def test_bad_input_cuda(ctx, case):
    check(ctx, *CUDA_CASES[case])


def test_a_crash_is_caught(ctx):
    """The harness itself: a child killed by a signal is reported as such."""
    code, outcome = run_isolated(ctx, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert code == -11 and outcome == "crashed"


def test_a_valid_call_raises_nothing(ctx):
    code, outcome = run_isolated(ctx, "assert fwd().shape == (1, 2, 4, 4)")
    assert code == 0 and outcome is None
