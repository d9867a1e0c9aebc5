"""Each pass as two callables, ours and torch's, on the same tensors; the
correctness check that runs before any timing; and one benchmark step that
verifies, times side by side and returns a Record.

ours:  torch.ops.conv_ext.conv2d_forward / conv2d_backward_input /
       conv2d_backward_weight / conv2d_backward_bias; forward_backward is
       conv_ext.conv2d through autograd, as a user runs it.
torch: F.conv2d; torch.ops.aten.convolution_backward with output_mask
       selecting grad input or grad weight; grad_output.sum((0, 2, 3)) for
       the bias gradient; forward_backward is F.conv2d through autograd."""
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from . import limits, timing
from .record import Record

DTYPES = {
    "float32": torch.float32,
    "tf32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

# Largest accepted rel_err (max |ours - torch| / max |torch|). Both sides
# accumulate wide and round once, so the gap is a few units in the last place
# of the output format, plus summation-order differences that grow with the
# reduction length (up to ~1e5 terms for grad weight in the suite).
TOLERANCE = {
    "float64": 1e-10,
    "float32": 1e-4,
    "tf32": 5e-3,
    "float16": 1e-2,
    "bfloat16": 4e-2,
}


@dataclass
class Problem:
    """The tensors of one shape: input, weight, bias and a grad_output, with
    weights scaled by 1/sqrt(fan_in) so outputs stay O(1) even in float16."""

    shape: object
    x: torch.Tensor
    w: torch.Tensor
    b: torch.Tensor
    gy: torch.Tensor
    layout: str = "contiguous"

    @property
    def conf(self):
        s = self.shape
        return [s.stride] * 2, [s.pad] * 2, [s.dil] * 2, s.groups


def make_problem(shape, device, dtype_name, channels_last=False, seed=0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    dtype = DTYPES[dtype_name]
    fan_in = shape.cg * shape.r * shape.s

    def rand(size, scale=1.0):
        t = torch.randn(size, generator=gen) * scale
        t = t.to(device=device, dtype=dtype)
        if channels_last and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    return Problem(
        shape,
        x=rand(shape.input_size),
        w=rand(shape.weight_size, 1.0 / math.sqrt(fan_in)),
        b=rand((shape.k,)),
        gy=rand(shape.output_size),
        layout="channels_last" if channels_last else "contiguous",
    )


def contenders(problem, pass_name):
    """(ours, torch): two zero-argument callables computing `pass_name` on
    `problem`, each returning a tensor or a tuple of tensors."""
    import conv_ext  # registers torch.ops.conv_ext

    ops = torch.ops.conv_ext
    stride, pad, dil, groups = problem.conf
    x, w, b, gy = problem.x, problem.w, problem.b, problem.gy
    input_size, weight_size = list(x.shape), list(w.shape)

    def aten_backward(mask):
        return lambda: torch.ops.aten.convolution_backward(
            gy, x, w, [w.shape[0]], stride, pad, dil, False, [0, 0], groups, mask)

    if pass_name == "forward":
        return (lambda: ops.conv2d_forward(x, w, b, stride, pad, dil, groups),
                lambda: F.conv2d(x, w, b, stride, pad, dil, groups))
    if pass_name == "backward_input":
        torch_all = aten_backward([True, False, False])
        return (lambda: ops.conv2d_backward_input(gy, w, input_size, stride, pad, dil, groups),
                lambda: torch_all()[0])
    if pass_name == "backward_weight":
        torch_all = aten_backward([False, True, False])
        return (lambda: ops.conv2d_backward_weight(gy, x, weight_size, stride, pad, dil, groups),
                lambda: torch_all()[1])
    if pass_name == "backward_bias":
        # Not convolution_backward with mask (F, F, T): on CPU that runs the
        # whole oneDNN backward (~200x a plain sum on r50_res4_3x3), a
        # baseline nobody pays. torch's own bias gradient is this sum.
        return (lambda: ops.conv2d_backward_bias(gy), lambda: gy.sum(dim=(0, 2, 3)))
    if pass_name == "forward_backward":
        return (_through_autograd(conv_ext.conv2d, problem), _through_autograd(F.conv2d, problem))
    raise ValueError(f"unknown pass {pass_name!r}; expected one of {list(limits.PASSES)}")


def _through_autograd(conv, problem):
    stride, pad, dil, groups = problem.conf
    leaves = [t.detach().requires_grad_() for t in (problem.x, problem.w, problem.b)]
    gy = problem.gy

    def step():
        y = conv(*leaves, stride, pad, dil, groups)
        return (y, *torch.autograd.grad(y, leaves, gy))

    return step


def rel_err(ours, reference):
    """max |ours - reference| / max |reference|, in float64, the worst over
    the tensors of a tuple; inf on a shape mismatch, nan if ours has NaNs."""
    ours = ours if isinstance(ours, tuple) else (ours,)
    reference = reference if isinstance(reference, tuple) else (reference,)
    worst = 0.0
    for a, b in zip(ours, reference, strict=True):
        if a.shape != b.shape:
            return math.inf
        a, b = a.double(), b.double()
        scale = b.abs().max().item() if b.numel() else 0.0
        diff = (a - b).abs().max().item() if b.numel() else 0.0
        err = diff / scale if scale > 0 else diff
        if math.isnan(err):
            return math.nan
        worst = max(worst, err)
    return worst


def run(problem, pass_name, device, dtype_name, ceilings, plan, meta):
    """Verify ours against torch, then time both interleaved; a Record either
    way. A failed check or an error is recorded (ok=False) and ours is not
    timed: a speed without a correct result is no result."""
    shape = problem.shape
    itemsize = problem.x.element_size()
    fl = limits.flops(shape, pass_name)
    nbytes = limits.min_bytes(shape, pass_name, itemsize)
    limit_ms = ceilings.time_at_limit_ms(fl, nbytes)
    tol = TOLERANCE[dtype_name]
    ours_fn, torch_fn = contenders(problem, pass_name)

    error, err, ours_ms, torch_ms = None, None, None, None
    try:
        expected = torch_fn()
    except Exception as exc:  # noqa: BLE001  (torch lacks this dtype/device: recorded)
        expected, error = None, f"torch: {type(exc).__name__}: {_first_line(exc)}"
    if expected is not None:
        try:
            err = rel_err(ours_fn(), expected)
        except Exception as exc:  # noqa: BLE001  (ours lacks a kernel: recorded, not fatal)
            error = f"ours: {type(exc).__name__}: {_first_line(exc)}"
        del expected
    ok = error is None and err is not None and err <= tol
    if ok:
        ours_ms, torch_ms = timing.compare([ours_fn, torch_fn], device, plan)
    elif error is None or error.startswith("ours"):
        torch_ms = timing.compare([torch_fn], device, plan)[0]
    if error is None and not ok:
        error = f"check failed: rel_err {err:.3g} > {tol:g}"

    return Record(
        shape=shape.name, dims=shape.describe(), device=device, dtype=dtype_name,
        layout=problem.layout,
        pass_name=pass_name, ours_ms=ours_ms, torch_ms=torch_ms,
        speedup=torch_ms / ours_ms if ours_ms and torch_ms else None,
        flops=fl, min_bytes=nbytes,
        ours_tflops=fl / (ours_ms * 1e-3) / 1e12 if ours_ms else None,
        torch_tflops=fl / (torch_ms * 1e-3) / 1e12 if torch_ms else None,
        limit_ms=limit_ms, limit_pct=limits.limit_pct(limit_ms, ours_ms),
        torch_limit_pct=limits.limit_pct(limit_ms, torch_ms),
        rel_err=err, tolerance=tol, ok=ok, error=error,
        rate_tflops=ceilings.rate_tflops, rate_source=ceilings.rate_source,
        bandwidth_gbs=ceilings.bandwidth_gbs, **meta,
    )


def with_ceilings(record, ceilings):
    """`record` with its limit recomputed for `ceilings` (measured again at
    the end of a run, the better of both measurements is kept)."""
    limit_ms = ceilings.time_at_limit_ms(record.flops, record.min_bytes)
    return replace(
        record, limit_ms=limit_ms, limit_pct=limits.limit_pct(limit_ms, record.ours_ms),
        torch_limit_pct=limits.limit_pct(limit_ms, record.torch_ms), rate_tflops=ceilings.rate_tflops,
        rate_source=ceilings.rate_source, bandwidth_gbs=ceilings.bandwidth_gbs)


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""
