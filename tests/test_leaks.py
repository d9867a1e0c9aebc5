"""No leaks: 10,000 forward+backward iterations (and thousands of rejected
calls) leave the process's resident memory, and CUDA's allocated memory,
where they were after warm-up."""
import ctypes
import gc
import os

import pytest
import torch

import conv_ext

ops = conv_ext.ops
ITERATIONS = 10_000
WARMUP = 1_000
# Measured growth after warm-up: <= 132 KiB over 10,000 iterations. Leaking
# 100 bytes per iteration would add 1 MiB; one leaked tensor (TensorImpl,
# storage, buffer) is several hundred bytes at least.
RSS_BOUND = 2**20


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(autouse=True)
def _one_thread():
    # Memory is what is measured; one thread keeps 10,000 tiny passes fast
    # on a loaded machine (OpenMP barriers would dominate them).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_step(x, w, b, kw):
    y = conv_ext.conv2d(x, w, b, **kw)
    y.square().sum().backward()


def direct_ops(x, w, b, kw):
    conf = ([kw["stride"]] * 2, [kw["padding"]] * 2, [1, 1], kw["groups"])
    y = ops.conv2d_forward(x, w, b, *conf)
    ops.conv2d_backward_input(y, w, list(x.shape), *conf)
    ops.conv2d_backward_weight(y, x, list(w.shape), *conf)
    ops.conv2d_backward_bias(y)


def rejected_calls(x, w, b, kw):
    for call in (lambda: ops.conv2d_forward(x, w, b, [1, 1], [0, 0], [1, 1], 3),
                 lambda: ops.conv2d_backward_input(x, w, [1, 2], [1, 1], [0, 0], [1, 1], 1),
                 lambda: conv_ext.conv2d(x, w, b, stride=0)):
        try:
            call()
        except (RuntimeError, ValueError):
            pass


def release_free_heap():
    """Hands free heap pages back to the OS (glibc's malloc_trim), so that
    memory freed by earlier tests cannot absorb a leak unseen."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def memory_growth(step, device, iterations):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6, device=device, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, device=device, requires_grad=True)
    b = torch.randn(6, device=device, requires_grad=True)
    kw = dict(stride=1, padding=1, groups=2)
    for _ in range(WARMUP):
        step(x, w, b, kw)
    gc.collect()
    release_free_heap()
    if device == "cuda":
        torch.cuda.synchronize()
    rss0 = rss_bytes()
    cuda0 = torch.cuda.memory_allocated() if device == "cuda" else 0
    for _ in range(iterations):
        step(x, w, b, kw)
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
    rss1 = rss_bytes()
    cuda1 = torch.cuda.memory_allocated() if device == "cuda" else 0
    return rss1 - rss0, cuda1 - cuda0


def test_training_loop_keeps_memory_flat(device):
    rss, cuda = memory_growth(train_step, device, ITERATIONS)
    assert rss <= RSS_BOUND, f"RSS grew {rss / 2**20:.1f} MiB over {ITERATIONS} iterations"
    assert cuda == 0, f"CUDA allocated memory grew {cuda} bytes"


def test_direct_ops_keep_memory_flat(device):
    rss, cuda = memory_growth(direct_ops, device, ITERATIONS // 2)
    assert rss <= RSS_BOUND, f"RSS grew {rss / 2**20:.1f} MiB"
    assert cuda == 0, f"CUDA allocated memory grew {cuda} bytes"


def test_rejected_calls_keep_memory_flat(device):
    rss, cuda = memory_growth(rejected_calls, device, ITERATIONS // 2)
    assert rss <= RSS_BOUND, f"RSS grew {rss / 2**20:.1f} MiB"
    assert cuda == 0, f"CUDA allocated memory grew {cuda} bytes"


def test_the_measure_sees_a_leak():
    """The bound is tight enough: keeping one small tensor per iteration
    (what a leaked output would do) exceeds it."""
    kept = []

    def leaky(x, w, b, kw):
        kept.append(ops.conv2d_forward(x.detach(), w.detach(), b.detach(), [1, 1], [1, 1], [1, 1], 2))

    rss, _ = memory_growth(leaky, "cpu", ITERATIONS)
    assert rss > RSS_BOUND
