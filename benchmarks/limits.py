"""What each pass must do (FLOPs, minimum bytes moved), the machine's limits
(matmul rate and copy bandwidth through torch, measured in the same run), and
the roofline arithmetic that turns them into a fraction of the limit.

A pass cannot run faster than time_at_limit = max(FLOPs / rate, bytes / bandwidth):
the matmul rate is what the machine's best GEMM reaches (a convolution is a
GEMM once its operands are gathered), the bandwidth what a plain copy reaches.
limit_pct = time_at_limit / measured_time * 100 (100 = at the limit)."""
from dataclasses import asdict, dataclass

import torch

from . import timing

PASSES = ("forward", "backward_input", "backward_weight", "backward_bias", "forward_backward")


def conv_flops(shape):
    """Multiply-adds of one convolution pass, counted as 2 FLOPs each:
    2 * N * K * P * Q * (C / groups) * R * S. Forward, grad input and grad
    weight all do exactly this many."""
    return 2 * shape.n * shape.k * shape.p * shape.q * shape.cg * shape.r * shape.s


def flops(shape, pass_name):
    """FLOPs of `pass_name`. The bias gradient sums N*P*Q values per output
    channel (one add each); it is bound by bytes, not FLOPs. forward_backward
    is forward + grad input + grad weight + grad bias (the bias add of the
    forward, N*K*P*Q, is counted with the bias gradient's adds)."""
    conv = conv_flops(shape)
    bias = shape.n * shape.k * shape.p * shape.q
    return {
        "forward": conv,
        "backward_input": conv,
        "backward_weight": conv,
        "backward_bias": bias,
        "forward_backward": 3 * conv + 2 * bias,
    }[_check(pass_name)]


def min_bytes(shape, pass_name, itemsize):
    """Bytes a pass must move at least: each operand read once, each result
    written once. forward_backward is the sum of its four passes, each a
    separate op that reads its own operands (grad_output is read by three)."""
    x = shape.n * shape.c * shape.h * shape.w
    w = shape.k * shape.cg * shape.r * shape.s
    y = shape.n * shape.k * shape.p * shape.q
    b = shape.k
    elements = {
        "forward": x + w + b + y,
        "backward_input": y + w + x,
        "backward_weight": y + x + w,
        "backward_bias": y + b,
    }
    if pass_name == "forward_backward":
        return itemsize * sum(elements.values())
    return itemsize * elements[_check(pass_name)]


def _check(pass_name):
    if pass_name not in PASSES:
        raise ValueError(f"unknown pass {pass_name!r}; expected one of {list(PASSES)}")
    return pass_name


def time_at_limit_ms(flop_count, byte_count, rate_flops, bandwidth_bytes):
    """Milliseconds the pass takes at the machine's limit (roofline):
    max(FLOPs / rate, bytes / bandwidth), rate in FLOP/s, bandwidth in B/s."""
    if rate_flops <= 0 or bandwidth_bytes <= 0:
        raise ValueError(f"expected positive rate and bandwidth, got {rate_flops} and {bandwidth_bytes}")
    return max(flop_count / rate_flops, byte_count / bandwidth_bytes) * 1e3


def limit_pct(limit_ms, measured_ms):
    """Fraction of the limit reached, in percent: 100 * time_at_limit / measured."""
    if measured_ms is None or measured_ms <= 0:
        return None
    return 100.0 * limit_ms / measured_ms


# ---------------------------------------------------------------- measurement
@dataclass(frozen=True)
class Ceilings:
    """The machine's limits for one dtype, as torch reaches them in this run:
    `rate_tflops` the torch.mm rate that bounds this dtype's convolutions,
    `rate_source` which matmul gave it, `bandwidth_gbs` a device copy (read +
    write bytes per second)."""

    rate_tflops: float
    rate_source: str
    bandwidth_gbs: float

    def time_at_limit_ms(self, flop_count, byte_count):
        return time_at_limit_ms(flop_count, byte_count, self.rate_tflops * 1e12, self.bandwidth_gbs * 1e9)

    def as_dict(self):
        return asdict(self)

    def best(self, other):
        """The higher rate and the higher bandwidth of two measurements: a
        neighbour's load can only slow a measurement down."""
        rate = self if self.rate_tflops >= other.rate_tflops else other
        return Ceilings(rate.rate_tflops, rate.rate_source, max(self.bandwidth_gbs, other.bandwidth_gbs))


# Matmul sizes: large enough to reach the rate, small enough for --quick.
_MM_SIZE = {("cpu", False): 2048, ("cpu", True): 1024, ("cuda", False): 8192, ("cuda", True): 4096}
_COPY_MB = {("cpu", False): 256, ("cpu", True): 64, ("cuda", False): 1024, ("cuda", True): 512}


def rate_dtypes(device, dtype_name):
    """[(torch dtype, allow_tf32)]: the matmuls whose best rate bounds
    `dtype_name` on `device`. On CPU, float16/bfloat16 kernels may compute in
    float32 (AVX2 has no 16-bit FMA) or in native units (AVX-512 FP16/BF16,
    AMX), so the faster of SGEMM and the dtype's own matmul is the bound."""
    if device == "cpu":
        return {
            "float32": [(torch.float32, False)],
            "float64": [(torch.float64, False)],
            "float16": [(torch.float32, False), (torch.float16, False)],
            "bfloat16": [(torch.float32, False), (torch.bfloat16, False)],
        }[dtype_name]
    return [{
        "float32": (torch.float32, False),
        "tf32": (torch.float32, True),
        "float64": (torch.float64, False),
        "float16": (torch.float16, False),
        "bfloat16": (torch.bfloat16, False),
    }[dtype_name]]


def matmul_tflops(device, dtype, allow_tf32, size, plan):
    """Rate of torch.mm on size x size matrices, TFLOP/s (best repetition)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    with tf32_mode(device, allow_tf32):
        ms = timing.best_ms(lambda: torch.mm(a, b, out=out), device, plan)
    return 2 * size**3 / (ms * 1e-3) / 1e12


def copy_gbs(device, megabytes, plan):
    """Bandwidth of a plain device copy, read + write bytes, GB/s (best repetition)."""
    src = torch.empty(megabytes * 2**20 // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    ms = timing.best_ms(lambda: dst.copy_(src), device, plan)
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


def measure(device, dtype_name, quick=False):
    """Ceilings for benchmarking `dtype_name` on `device`, measured now."""
    plan = timing.Budget(warmup=2, min_reps=3 if quick else 5, max_reps=10 if quick else 20, seconds=0.5)
    size = _MM_SIZE[(device, bool(quick))]
    best = None
    for dtype, allow_tf32 in rate_dtypes(device, dtype_name):
        rate = matmul_tflops(device, dtype, allow_tf32, size, plan)
        source = f"torch.mm {size}^3 {str(dtype).replace('torch.', '')}" + (" tf32" if allow_tf32 else "")
        if best is None or rate > best[0]:
            best = (rate, source)
    return Ceilings(*best, copy_gbs(device, _COPY_MB[(device, bool(quick))], plan))


class tf32_mode:
    """Context setting torch.backends.{cuda.matmul,cudnn}.allow_tf32 (CUDA
    only; CPU has no TF32), restoring both on exit."""

    def __init__(self, device, allow):
        self.device, self.allow = device, allow

    def __enter__(self):
        if self.device != "cpu":
            self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            torch.backends.cuda.matmul.allow_tf32 = self.allow
            torch.backends.cudnn.allow_tf32 = self.allow
        return self

    def __exit__(self, *exc):
        if self.device != "cpu":
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved
        return False
