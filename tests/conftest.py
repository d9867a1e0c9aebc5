import pytest
import torch

import conv_ext  # noqa: F401  (registers torch.ops.conv_ext)

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")

DEVICES = ["cpu", pytest.param("cuda", marks=[requires_cuda, pytest.mark.cuda])]


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
