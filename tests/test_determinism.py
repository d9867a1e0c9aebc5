"""Bitwise reproducibility: with a fixed thread count, the output and all
three gradients are identical from call to call and from process to
process, on the CPU and on CUDA."""
import hashlib
import os
import subprocess
import sys

import pytest
import torch

import conv_ext

# Large enough that every pass splits its work across threads and tiles
# (grad_weight reduces over 4 x 18 x 18 pixels, the forward over 8 x 3 x 3).
X_SHAPE, W_SHAPE = (4, 16, 19, 19), (24, 8, 3, 3)
CONV = dict(stride=1, padding=1, dilation=1, groups=2)
DTYPES = [torch.float32, torch.float64, torch.bfloat16]


def results(device, dtype, seed=0, channels_last=False):
    """Output and gradients (input, weight, bias) for fixed data."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64).to(device, dtype)

    x, w, b = rand(*X_SHAPE), rand(*W_SHAPE), rand(W_SHAPE[0])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(), w.requires_grad_(), b.requires_grad_()
    y = conv_ext.conv2d(x, w, b, **CONV)
    g = rand(*y.shape)
    grads = torch.autograd.grad(y, (x, w, b), g)
    return [t.detach() for t in (y, *grads)]


def digest(tensors):
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bitwise_identical_call_to_call(device, dtype, channels_last, threads):
    first = results(device, dtype, channels_last=channels_last)
    for _ in range(3):
        again = results(device, dtype, channels_last=channels_last)
        for name, a, b in zip(["output", "grad_input", "grad_weight", "grad_bias"], first, again):
            assert torch.equal(a, b), f"{name} differs between identical calls"


CHILD = """
import torch, conv_ext, sys
sys.path.insert(0, {tests!r})
from test_determinism import results, digest
torch.set_num_threads({threads})
print(digest(results({device!r}, torch.{dtype})))
"""


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_bitwise_identical_process_to_process(device, dtype, threads):
    """A fresh process (new allocations, new thread pool) computes the same
    bits as this one."""
    here = digest(results(device, getattr(torch, dtype)))
    child = CHILD.format(tests=os.path.dirname(__file__), threads=threads, device=device, dtype=dtype)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == here
