"""python -m benchmarks.e2e: one training step (forward, cross-entropy,
backward, SGD) of real architectures (benchmarks/models.py: ResNet-18,
MobileNetV2, EfficientNet-B0, RegNetX-400MF, ShuffleNetV2), with torch's
nn.Conv2d and after conv_ext.replace_conv2d, in images per second; and the
per-call overhead of a tiny MyConv2d against nn.Conv2d.

Both versions of a model start from the same weights. Before timing, the
loss and every parameter's gradient of each are compared with a float64 copy
of the model: ours must be within twice torch's own error (or a floor per
dtype), with ReLU and max pooling smoothed so rounding flips no mask; and
ours in float64 must match torch in float64 on the model as it is. Then the
steps are timed in rounds: each round runs every model in turn, and within a
model the steps of ours and torch alternate, so a neighbour's load or a
clock change hits both alike. The speedup is the ratio of the medians; its
range over the rounds says how noisy the machine was.

--autocast runs the same step as mixed-precision training: float32 models,
forward and loss under torch.autocast(device, dtype=torch.bfloat16) (every
convolution, ours and torch's, then runs in bfloat16), backward and SGD
outside it. The check then runs both models' forward under autocast too,
against the same float64 copy: ours within twice torch's own autocast
error, or the bfloat16 floor."""
import argparse
import contextlib
import copy
import math
import sys
from dataclasses import asdict, dataclass

from . import models as model_zoo

DEFAULTS = {  # (batch, image size) per device and --quick
    ("cuda", False): (64, 224), ("cuda", True): (8, 64),
    ("cpu", False): (8, 112), ("cpu", True): (2, 32),
}
ROUNDS = {False: 3, True: 1}
# Ours passes when its worst error against the float64 model is at most
# max(2 * torch's worst, FLOOR): torch's error says what the dtype allows
# through the network; the floor keeps a lucky torch from failing us. The
# float32 floor: over the five models and five seeds (batch 2, 32x32) ours
# reached up to 1.0e-5 and 2.1x torch's worst (ShuffleNetV2 and MobileNetV2,
# batch-norm weight gradients, sums that cancel), torch up to 6.2e-6; a
# convolution weight 0.1 % off fails by more than 10x (tests).
FLOOR = {"float64": 1e-10, "float32": 3e-5, "tf32": 1e-3, "float16": 1e-2, "bfloat16": 1e-2}
# --autocast: the dtype convolutions run in (float32 models, bfloat16 convolutions).
AUTOCAST_DTYPE = "bfloat16"


@dataclass
class E2ERecord:
    model: str
    device: str
    dtype: str
    layout: str
    batch: int
    image_size: int
    convs: int  # nn.Conv2d layers, all swapped for MyConv2d in ours
    params: int
    conv_gflop_per_step: float  # forward + both backward convolutions, whole batch
    ours_ms: float | None  # median of the rounds' medians
    torch_ms: float | None
    ours_img_s: float | None
    torch_img_s: float | None
    speedup: float | None  # torch_ms / ours_ms
    speedup_min: float | None  # lowest and highest speedup of a single round
    speedup_max: float | None
    rounds: int
    rel_err: float | None  # ours vs the float64 model (smoothed), worst of the loss and every gradient
    torch_rel_err: float | None  # torch's nn.Conv2d vs the float64 model (smoothed), likewise
    tolerance: float | None  # max(2 * torch_rel_err, floor)
    float64_rel_err: float | None  # ours in float64 vs torch in float64, the models unsmoothed
    ok: bool
    error: str | None
    autocast: str | None = None  # the dtype of torch.autocast around forward and loss, or None

    def as_dict(self):
        return asdict(self)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.e2e", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=("float32", "tf32", "float64", "float16", "bfloat16"), default="float32")
    p.add_argument("--models", nargs="+", choices=list(model_zoo.MODELS), default=list(model_zoo.MODELS),
                   metavar="MODEL", help=f"models to run (default all: {', '.join(model_zoo.MODELS)})")
    p.add_argument("--batch", type=int, help="images per step (default: cpu 8, cuda 64; --quick: cpu 2, cuda 8)")
    p.add_argument("--image-size", type=int,
                   help="square image side (default: cpu 112, cuda 224; --quick: cpu 32, cuda 64)")
    p.add_argument("--channels-last", action="store_true", help="models and images in channels_last")
    p.add_argument("--autocast", action="store_true",
                   help=f"mixed precision: float32 models, forward and loss under torch.autocast(device, "
                        f"dtype=torch.{AUTOCAST_DTYPE})")
    p.add_argument("--quick", action="store_true", help="small batch and images, one round, few steps (CI)")
    p.add_argument("--rounds", type=int, help=f"timing rounds over all models (default {ROUNDS[False]}; "
                                              f"--quick: {ROUNDS[True]})")
    p.add_argument("--reps", type=int, help="exact number of timed steps per model and round")
    p.add_argument("--threads", type=int, help="torch.set_num_threads before running (CPU)")
    p.add_argument("--no-overhead", action="store_true", help="skip the per-call overhead measurement")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the Markdown tables")
    p.add_argument("--plot", metavar="PATH", help="write the speedup plot (PNG)")
    p.add_argument("--from-json", metavar="PATH",
                   help="run nothing: render the Markdown (and --plot) of a saved --json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "cpu" and args.dtype == "tf32":
        parser.error("--dtype tf32 is a CUDA mode (TF32 tensor cores); on CPU use float32")
    if args.autocast and args.dtype != "float32":
        parser.error(f"--autocast trains float32 models (autocast lowers their convolutions); got --dtype {args.dtype}")
    batch, size = DEFAULTS[(args.device, args.quick)]
    args.batch = batch if args.batch is None else args.batch
    args.image_size = size if args.image_size is None else args.image_size
    args.rounds = ROUNDS[args.quick] if args.rounds is None else args.rounds
    for name in ("batch", "image_size", "reps", "threads", "rounds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.image_size < 32:
        parser.error(f"--image-size must be >= 32 (five stride-2 stages), got {args.image_size}")
    if args.batch < 2:
        parser.error(f"--batch must be >= 2 (batch norm needs two values per channel at 1x1), got {args.batch}")
    args.models = list(dict.fromkeys(args.models))
    return args


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / (scale if scale > 0 else 1.0)


def autocast_context(device, autocast):
    """torch.autocast(device, dtype=autocast) around a forward, or nothing
    when autocast is None."""
    import torch

    if autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=getattr(torch, autocast))


def _step(model, optimizer, images, labels, autocast=None):
    import torch.nn.functional as F

    optimizer.zero_grad(set_to_none=True)
    with autocast_context(images.device.type, autocast):
        loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss


def _loss_and_grads(model, images, labels, autocast=None):
    """{'loss': ..., parameter name: gradient} of one forward/backward, the
    forward under autocast when `autocast` names a dtype."""
    import torch.nn.functional as F

    model.eval()
    model.zero_grad(set_to_none=True)
    with autocast_context(images.device.type, autocast):
        loss = F.cross_entropy(model(images), labels)
    loss.backward()
    model.train()
    out = {"loss": loss.detach()}
    out.update((name, p.grad) for name, p in model.named_parameters())
    model.zero_grad(set_to_none=True)
    return out


def smooth(model):
    """`model` with ReLU and ReLU6 replaced by SiLU and max pooling by average
    pooling over the same windows (in place; returned). Their derivatives
    jump where rounding decides: a pre-activation within rounding of zero, a
    near-tie in a pooling window. One such element, rounded the other way by
    a correct kernel, changes a gradient by 1e-3 of its largest value
    (RegNetX-400MF at batch 8, 112x112: one ReLU of features.13 flips; ours
    9.9e-4 against the float64 model, torch 3.1e-7, every convolution's own
    result within 7e-7). The convolutions, what the check is for, stay."""
    from torch import nn

    for name, child in model.named_children():
        if isinstance(child, (nn.ReLU, nn.ReLU6)):
            setattr(model, name, nn.SiLU())
        elif isinstance(child, nn.MaxPool2d):
            setattr(model, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
        else:
            smooth(child)
    return model


def _compare(got, expected):
    """{tensor name: relative error} over the tensors the loss reaches."""
    assert got.keys() == expected.keys()
    return {name: _rel(got[name], ref) for name, ref in expected.items() if ref is not None}


def _worst(errors):
    """(name, error) of the largest error; NaN counts as the largest."""
    return max(errors.items(), key=lambda kv: math.inf if kv[1] != kv[1] else kv[1])


def check(torch_model, ours_model, images, labels, floor, autocast=None):
    """(ours error, torch error, tolerance, float64 error, what failed or
    None) for one forward/backward from identical weights (before any SGD
    step), over the loss and every parameter's gradient.

    In the timed dtype, on smooth() copies of both models: ours and torch
    against a float64 copy of torch's. The errors are the worst relative
    error over all tensors; ours passes when its worst is within
    max(2 * torch's worst, floor). Not tensor by tensor: on one tensor,
    summation order alone puts two correct float32 implementations up to
    ~5x apart (ShuffleNetV2, a batch-norm weight gradient: 1.0e-5 against
    torch's 2.1e-6), while a wrong layer is off by orders of magnitude.

    In float64, on the models as they are (ReLU, max pooling; rounding at
    1e-16 flips no mask): ours against torch, within FLOOR['float64'].

    With `autocast` (a dtype name), ours and torch run their forward under
    torch.autocast to that dtype; the float64 reference and the float64
    comparison run without it (autocast never lowers float64).

    Batch norm runs on its running statistics here (eval mode): with batch
    statistics over a small batch (2 values per channel at 1x1 resolution)
    the gradients are ill-conditioned and rounding differences of any two
    correct implementations grow without bound."""
    import torch

    smooth_torch = smooth(copy.deepcopy(torch_model))
    reference = copy.deepcopy(smooth_torch).to(torch.float64)
    expected = _loss_and_grads(reference, images.to(torch.float64), labels)
    ours_errs = _compare(_loss_and_grads(smooth(copy.deepcopy(ours_model)), images, labels, autocast), expected)
    torch_err = _worst(_compare(_loss_and_grads(smooth_torch, images, labels, autocast), expected))[1]
    tol = max(2 * torch_err, floor)
    name, ours_err = _worst(ours_errs)
    failed = None if ours_err <= tol else f"{name}: {ours_err:.3g} > {tol:.3g} (2x torch's worst, or the floor)"

    images64 = images.to(torch.float64)
    exact = _loss_and_grads(copy.deepcopy(torch_model).to(torch.float64), images64, labels)
    name64, err64 = _worst(_compare(_loss_and_grads(copy.deepcopy(ours_model).to(torch.float64), images64,
                                                    labels), exact))
    if failed is None and not err64 <= FLOOR["float64"]:
        failed = f"float64, unsmoothed: {name64}: {err64:.3g} > {FLOOR['float64']:.3g}"
    return ours_err, torch_err, tol, err64, failed


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


class _Contest:
    """One architecture, torch's and ours, with their optimizers and data."""

    def __init__(self, name, args, images, labels):
        import torch

        import conv_ext

        from . import passes

        self.name = name
        fmt = torch.channels_last if args.channels_last else torch.contiguous_format
        torch.manual_seed(0)
        self.torch_model = model_zoo.build(name).to(
            device=args.device, dtype=passes.DTYPES[args.dtype], memory_format=fmt).train()
        self.ours_model = conv_ext.replace_conv2d(copy.deepcopy(self.torch_model))
        self.convs = sum(isinstance(m, torch.nn.Conv2d) for m in self.torch_model.modules())
        self.params = sum(p.numel() for p in self.torch_model.parameters())
        self.conv_gflop = 3 * model_zoo.conv_flops(self.torch_model, args.image_size, args.batch) / 1e9
        # lr small enough that hundreds of steps on one batch stay finite in float16.
        opts = [torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9)
                for m in (self.ours_model, self.torch_model)]
        self.autocast = AUTOCAST_DTYPE if args.autocast else None
        self.steps = [lambda m=m, o=o: _step(m, o, images, labels, self.autocast)
                      for m, o in zip((self.ours_model, self.torch_model), opts)]
        self.images, self.labels = images, labels
        self.ours_err = self.torch_err = self.tol = self.float64_err = self.error = None
        self.ok = False
        self.rounds = []  # per round: [ours_ms, torch_ms] or [torch_ms]

    def verify(self, dtype):
        floor = FLOOR[self.autocast or dtype]
        try:
            self.ours_err, self.torch_err, self.tol, self.float64_err, failed = check(
                self.torch_model, self.ours_model, self.images, self.labels, floor, self.autocast)
            if failed is not None:
                self.error = f"check failed: {failed}"
        except Exception as exc:  # noqa: BLE001  (ours lacks a kernel: recorded, the run goes on)
            self.error = f"{type(exc).__name__}: {_first_line(exc)}"
        self.ok = self.error is None

    def time_round(self, device, plan):
        from . import timing

        self.rounds.append(timing.compare(self.steps if self.ok else self.steps[1:], device, plan))

    def record(self, args):
        def median(values):
            values = sorted(values)
            mid = len(values) // 2
            return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

        ours_ms = torch_ms = lo = hi = None
        if self.rounds:
            torch_ms = median([r[-1] for r in self.rounds])
        if self.ok and self.rounds:
            ours_ms = median([r[0] for r in self.rounds])
            per_round = [r[1] / r[0] for r in self.rounds]
            lo, hi = min(per_round), max(per_round)
        img_s = lambda ms: args.batch / (ms * 1e-3) if ms else None  # noqa: E731
        return E2ERecord(
            model=self.name, device=args.device, dtype=args.dtype,
            layout="channels_last" if args.channels_last else "contiguous",
            batch=args.batch, image_size=args.image_size, convs=self.convs, params=self.params,
            conv_gflop_per_step=self.conv_gflop, ours_ms=ours_ms, torch_ms=torch_ms,
            ours_img_s=img_s(ours_ms), torch_img_s=img_s(torch_ms),
            speedup=torch_ms / ours_ms if ours_ms and torch_ms else None, speedup_min=lo, speedup_max=hi,
            rounds=len(self.rounds), rel_err=self.ours_err, torch_rel_err=self.torch_err, tolerance=self.tol,
            float64_rel_err=self.float64_err, ok=self.ok, error=self.error, autocast=self.autocast)


def plan_for(args):
    """Timing budget of one model in one round: a few warm-up steps (they
    also bring the model's weights back into cache after the other models
    ran), then steps for about two seconds per contender."""
    from . import timing

    if args.reps is not None:
        return timing.Budget(warmup=1, min_reps=args.reps, max_reps=args.reps, seconds=0.0)
    if args.quick:
        return timing.Budget(warmup=1, min_reps=2, max_reps=3, seconds=0.05)
    return timing.Budget(warmup=2, min_reps=5, max_reps=30, seconds=2.0)


def run(args, command):
    """Runs the benchmark described by `args`; returns the results as the
    JSON holds them: {'setup', 'models', 'overhead', 'geomean_speedup'}."""
    import torch

    from . import limits, machine, overhead, passes
    from .cli import progress
    from .report import geomean

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine.describe(args.device)
    setup = {k: info.get(k) for k in ("card", "driver", "isa", "torch_version", "commit", "date", "threads",
                                      "load_avg")}
    setup["command"] = command
    dtype = passes.DTYPES[args.dtype]
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=gen)
    images = images.to(device=args.device, dtype=dtype).contiguous(memory_format=fmt)
    labels = torch.randint(0, 1000, (args.batch,), generator=gen).to(args.device)

    plan = plan_for(args)
    # The per-call overhead layer is measured without autocast: under
    # --autocast it would repeat the float32 run's table.
    overhead_rounds = 0 if args.no_overhead or args.autocast else args.rounds
    bar = progress(len(args.models) * (1 + args.rounds) + overhead_rounds, args.no_progress)
    contests, overheads = [], []
    try:
        with limits.tf32_mode(args.device, args.dtype == "tf32"):
            for name in args.models:
                bar.set_postfix_str(f"{name}: check against float64")
                contest = _Contest(name, args, images, labels)
                contest.verify(args.dtype)
                contests.append(contest)
                bar.update(1)
            for r in range(args.rounds):
                for contest in contests:
                    bar.set_postfix_str(f"round {r + 1}/{args.rounds}: {contest.name}")
                    contest.time_round(args.device, plan)
                    bar.update(1)
            if overhead_rounds:
                bar.set_postfix_str("per-call overhead")
                tol = passes.TOLERANCE[args.dtype]
                overheads = overhead.measure(args.device, dtype, args.quick, overhead_rounds, tol)
                bar.update(overhead_rounds)
    finally:
        bar.close()
    setup["load_avg_end"] = machine.load_average()
    records = [c.record(args) for c in contests]
    return {
        "setup": setup,
        "models": [r.as_dict() for r in records],
        "overhead": [o.as_dict() for o in overheads],
        "geomean_speedup": geomean([r.speedup for r in records if r.ok]),
    }


def ok(results):
    """True when every model and the overhead layer passed their checks."""
    return all(r["ok"] for r in results["models"]) and all(o["ok"] for o in results["overhead"])


def main(argv=None):
    import json

    from . import e2e_report, machine
    from .report import ensure_parent

    args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as fh:
            results = json.load(fh)
        if not isinstance(results, dict) or "models" not in results:
            raise SystemExit(f"--from-json {args.from_json}: expected the JSON object python -m benchmarks.e2e "
                             "--json writes ('setup', 'models', 'overhead'); a list is the one-model format of "
                             "earlier versions")
    else:
        results = run(args, machine.command("python -m benchmarks.e2e", sys.argv[1:] if argv is None else argv))
    if args.json and not args.from_json:
        with open(ensure_parent(args.json), "w") as fh:
            json.dump(results, fh, indent=1)
            fh.write("\n")
    text = e2e_report.markdown(results)
    if args.markdown:
        with open(ensure_parent(args.markdown), "w") as fh:
            fh.write(text)
    if args.plot:
        e2e_report.plot(results, args.plot)
    print(text)
    return 0 if ok(results) else 1


if __name__ == "__main__":
    sys.exit(main())
