"""The per-call cost of a convolution too small to take any time of its own:
MyConv2d(1, 4, 3) on one 8x8 image against nn.Conv2d with the same weights,
forward under no_grad and forward+backward. What it measures is the host
path (argument checks, padding normalisation, dispatch, autograd), the cost
a user pays on every call of every layer; python -m benchmarks.e2e reports
it next to the training steps.

Each sample runs the call CALLS[case] times in a loop and is divided by
that, so the clock's resolution and the loop's own cost are small next to a
call of ~10 us; samples of ours and torch alternate as in timing.compare."""
import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from . import timing

LAYER = "MyConv2d(1, 4, 3) on (1, 1, 8, 8)"
CASES = ("forward_no_grad", "forward_backward")
CALLS = {"forward_no_grad": 200, "forward_backward": 50}  # calls per timed sample
# Overhead samples per round, full run and --quick.
SAMPLES = {False: 15, True: 3}


@dataclass
class OverheadRecord:
    case: str  # forward_no_grad or forward_backward
    layer: str
    ours_us: float | None  # median microseconds per call
    torch_us: float | None
    speedup: float | None  # torch_us / ours_us
    ratio: float | None  # ours_us / torch_us: the goal is <= 1.2
    calls_per_sample: int
    samples: int
    rel_err: float | None  # ours vs nn.Conv2d, worst of output and gradients
    ok: bool
    error: str | None

    def as_dict(self):
        return asdict(self)


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / (scale if scale > 0 else 1.0)


def _layers(device, dtype):
    import conv_ext

    torch.manual_seed(0)
    theirs = nn.Conv2d(1, 4, 3).to(device=device, dtype=dtype)
    ours = conv_ext.MyConv2d.from_conv2d(copy.deepcopy(theirs))
    return ours, theirs


def _forward(layer, x, calls):
    def run():
        with torch.no_grad():
            for _ in range(calls):
                layer(x)
    return run


def _forward_backward(layer, x, gy, calls):
    """A layer in the middle of a network: the input needs its gradient too.
    Gradients are dropped before each call, as zero_grad(set_to_none=True)
    does, so every backward writes fresh ones instead of accumulating."""
    def run():
        for _ in range(calls):
            x.grad = layer.weight.grad = layer.bias.grad = None
            layer(x).backward(gy)
    return run


def _check(ours, theirs, x, gy):
    """Worst relative error of ours against nn.Conv2d over the output and the
    three gradients."""
    results = []
    for layer in (ours, theirs):
        xi = x.detach().clone().requires_grad_()
        layer.zero_grad(set_to_none=True)
        y = layer(xi)
        y.backward(gy)
        results.append((y, xi.grad, layer.weight.grad, layer.bias.grad))
        layer.zero_grad(set_to_none=True)
    return max(_rel(a, b) for a, b in zip(*results, strict=True))


def measure(device, dtype, quick, rounds, tolerance):
    """One OverheadRecord per case, each timed over `rounds` rounds of
    interleaved samples (median of all samples)."""
    ours, theirs = _layers(device, dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 1, 8, 8, generator=gen).to(device=device, dtype=dtype)
    gy = torch.randn(1, 4, 6, 6, generator=gen).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    error = None
    try:
        err = _check(ours, theirs, x, gy)
    except Exception as exc:  # noqa: BLE001  (recorded: a broken path is no reason to stop the run)
        err, error = None, f"{type(exc).__name__}: {str(exc).strip()[:200]}"
    ok = error is None and err <= tolerance
    if error is None and not ok:
        error = f"check failed: rel_err {err:.3g} > {tolerance:.3g}"

    records = []
    for case in CASES:
        calls = CALLS[case] // (10 if quick else 1)
        xg = x.detach().clone().requires_grad_()
        make = (lambda m: _forward(m, x, calls)) if case == "forward_no_grad" else \
            (lambda m: _forward_backward(m, xg, gy, calls))

        def timed(fn):
            # Host time of the loop; on CUDA the device catches up at its end.
            return lambda: (fn(), sync())

        fns = [timed(make(theirs))] if not ok else [timed(make(ours)), timed(make(theirs))]
        samples = SAMPLES[bool(quick)]
        plan = timing.Budget(warmup=2, min_reps=samples, max_reps=samples, seconds=0.0)
        per_round = [timing.compare(fns, "cpu", plan) for _ in range(rounds)]
        # Median over the rounds' medians (the rounds are spread through the run).
        ms = [sorted(r[i] for r in per_round)[len(per_round) // 2] for i in range(len(fns))]
        us = [m * 1e3 / calls for m in ms]
        ours_us, torch_us = (us[0], us[1]) if ok else (None, us[0])
        records.append(OverheadRecord(
            case=case, layer=LAYER, ours_us=ours_us, torch_us=torch_us,
            speedup=torch_us / ours_us if ours_us else None,
            ratio=ours_us / torch_us if ours_us else None,
            calls_per_sample=calls, samples=samples * rounds, rel_err=err, ok=ok, error=error))
    return records
