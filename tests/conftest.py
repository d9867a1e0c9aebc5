import os
import signal
import threading

import pytest
import torch

import conv_ext  # noqa: F401  (registers torch.ops.conv_ext)

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")

DEVICES = ["cpu", pytest.param("cuda", marks=[requires_cuda, pytest.mark.cuda])]


# The CPU kernels' instruction-set levels (csrc/cpu/isa.cpp): "auto" is the
# best the CPU has.
ISAS = ["auto", "avx2", "scalar"]


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    """Runs a test once per CPU instruction-set level (CONV_EXT_CPU_ISA)."""
    monkeypatch.setenv("CONV_EXT_CPU_ISA", request.param)
    return request.param


# The levels a bfloat16 pass can take: "avx512" (AVX-512F without BF16)
# widens to float where "auto" runs the pair kernels on a CPU with AVX-512
# BF16. A fixture of its own: adding "avx512" to ISAS would run every test
# of the suite once more.
BF16_ISAS = ["auto", "avx512", "avx2", "scalar"]


@pytest.fixture(params=BF16_ISAS)
def bf16_isa(request, monkeypatch):
    """Runs a bfloat16 test once per level (CONV_EXT_CPU_ISA)."""
    monkeypatch.setenv("CONV_EXT_CPU_ISA", request.param)
    return request.param


@pytest.fixture(params=DEVICES)
def device(request):
    """Every test that takes `device` runs on the CPU and, where a GPU is
    present, on CUDA."""
    return request.param


@pytest.fixture(autouse=True)
def _exact_fp32():
    """Compare against exact FP32: torch's TF32 default would loosen the
    reference on Ampere and newer GPUs."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


class TestTimeLimit(BaseException):
    """A BaseException, so that hypothesis does not take it for a failing
    example and shrink (rerun) a test that is only slow; pytest still
    reports the test as failed."""

    __test__ = False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """CONV_EXT_TEST_TIMEOUT=seconds fails any test whose body runs longer
    (scripts/gpu_check.sh sets it, so that one slow test cannot take a whole
    time-boxed run; pytest-timeout need not be installed). Python runs the
    alarm between bytecodes: a call stuck inside a kernel is left to the
    caller's outer timeout."""
    limit = float(os.environ.get("CONV_EXT_TEST_TIMEOUT") or 0)
    if limit <= 0 or not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise TestTimeLimit(f"{item.nodeid} ran past CONV_EXT_TEST_TIMEOUT={limit:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
