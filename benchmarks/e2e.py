"""python -m benchmarks.e2e: one training step (forward, cross-entropy,
backward, SGD) of a ResNet-18-shaped model (benchmarks/models.py), with
torch's nn.Conv2d and after conv_ext.replace_conv2d, in images per second.

Both models start from the same weights. Before timing, the loss and the
convolution weight gradients of each are compared with a float64 copy of the
model: ours must be within twice torch's own error (or a floor per dtype)."""
import argparse
import copy
import sys
from dataclasses import asdict, dataclass

DEFAULTS = {  # (batch, image size) per device and --quick
    ("cuda", False): (64, 224), ("cuda", True): (8, 64),
    ("cpu", False): (8, 224), ("cpu", True): (2, 32),
}
# Ours passes when its error against the float64 model is at most
# max(2 * torch's error, FLOOR): torch's error says what the dtype allows
# through twenty layers; the floor keeps a lucky torch from failing us.
FLOOR = {"float64": 1e-10, "float32": 1e-5, "tf32": 1e-3, "float16": 1e-2, "bfloat16": 1e-2}


@dataclass
class E2ERecord:
    model: str
    device: str
    dtype: str
    layout: str
    batch: int
    image_size: int
    conv_gflop_per_step: float  # forward + both backward convolutions, whole batch
    ours_ms: float | None
    torch_ms: float | None
    ours_img_s: float | None
    torch_img_s: float | None
    speedup: float | None  # torch_ms / ours_ms
    rel_err: float | None  # ours vs the float64 model, worst of loss and conv weight grads
    torch_rel_err: float | None  # torch's nn.Conv2d vs the float64 model, likewise
    tolerance: float | None
    ok: bool
    error: str | None
    card: str
    driver: str | None
    torch_version: str
    commit: str
    date: str
    threads: int
    load_avg: float | None
    command: str

    def as_dict(self):
        return asdict(self)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.e2e", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=("float32", "tf32", "float64", "float16", "bfloat16"), default="float32")
    p.add_argument("--batch", type=int, help="images per step (default: cpu 8, cuda 64; --quick: cpu 2, cuda 8)")
    p.add_argument("--image-size", type=int, help="square image side (default 224; --quick: cpu 32, cuda 64)")
    p.add_argument("--channels-last", action="store_true", help="model and images in channels_last")
    p.add_argument("--quick", action="store_true", help="small batch and images, few repetitions (CI)")
    p.add_argument("--reps", type=int, help="exact number of timed steps per model")
    p.add_argument("--threads", type=int, help="torch.set_num_threads before running (CPU)")
    p.add_argument("--json", metavar="PATH", help="write the record as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the Markdown table")
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "cpu" and args.dtype == "tf32":
        parser.error("--dtype tf32 is a CUDA mode (TF32 tensor cores); on CPU use float32")
    batch, size = DEFAULTS[(args.device, args.quick)]
    args.batch = batch if args.batch is None else args.batch
    args.image_size = size if args.image_size is None else args.image_size
    for name in ("batch", "image_size", "reps", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.image_size < 32:
        parser.error(f"--image-size must be >= 32 (five stride-2 stages), got {args.image_size}")
    return args


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / (scale if scale > 0 else 1.0)


def _step(model, optimizer, images, labels):
    import torch.nn.functional as F

    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss


def _loss_and_grads(model, images, labels):
    import torch.nn.functional as F
    from torch import nn

    model.eval()
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    model.train()
    return [loss] + [m.weight.grad for m in model.modules() if isinstance(m, nn.Conv2d)]


def check(torch_model, ours_model, images, labels):
    """(ours, torch) errors against a float64 copy of the model: the worst
    relative error over the loss and every convolution's weight gradient, for
    one forward/backward from identical weights (before any SGD step).

    Batch norm runs on its running statistics here (eval mode): with batch
    statistics over a small batch (2 values per channel at 1x1 resolution)
    the gradients are ill-conditioned and rounding differences of any two
    correct implementations grow without bound."""
    import torch

    reference = copy.deepcopy(torch_model).to(torch.float64)
    expected = _loss_and_grads(reference, images.to(torch.float64), labels)
    errors = []
    for model in (ours_model, torch_model):
        got = _loss_and_grads(model, images, labels)
        errors.append(max(_rel(a, b) for a, b in zip(got, expected, strict=True)))
    return tuple(errors)


def run(args, command):
    import torch

    import conv_ext

    from . import limits, machine, models, passes, timing

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine.describe(args.device)
    dtype = passes.DTYPES[args.dtype]
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    torch.manual_seed(0)
    torch_model = models.resnet18().to(device=args.device, dtype=dtype, memory_format=fmt).train()
    ours_model = conv_ext.replace_conv2d(copy.deepcopy(torch_model))
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, device=args.device, dtype=dtype)
    images = images.contiguous(memory_format=fmt)
    labels = torch.randint(0, 1000, (args.batch,), device=args.device)
    conv_gflop = 3 * models.conv_flops(torch_model, args.image_size, args.batch) / 1e9

    ours_err = torch_err = ours_ms = torch_ms = tol = None
    error = None
    with limits.tf32_mode(args.device, args.dtype == "tf32"):
        try:
            ours_err, torch_err = check(torch_model, ours_model, images, labels)
            tol = max(2 * torch_err, FLOOR[args.dtype])
        except Exception as exc:  # noqa: BLE001  (ours lacks a kernel: recorded)
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
        ok = error is None and ours_err <= tol  # NaN compares False: fails
        if error is None and not ok:
            error = f"check failed: rel_err {ours_err:.3g} > {tol:.3g} (2x torch's {torch_err:.3g})"
        # lr small enough that hundreds of steps on one batch stay finite in float16.
        opts = [torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9) for m in (ours_model, torch_model)]
        steps = [lambda m=m, o=o: _step(m, o, images, labels) for m, o in zip((ours_model, torch_model), opts)]
        plan = timing.budget(args.device, args.quick, args.reps)
        plan = timing.Budget(plan.warmup, min(plan.min_reps, 5), min(plan.max_reps, 20), plan.seconds * 3)
        if ok:
            ours_ms, torch_ms = timing.compare(steps, args.device, plan)
        else:
            torch_ms = timing.compare(steps[1:], args.device, plan)[0]
    img_s = lambda ms: args.batch / (ms * 1e-3) if ms else None  # noqa: E731
    return E2ERecord(
        model="resnet18", device=args.device, dtype=args.dtype,
        layout="channels_last" if args.channels_last else "contiguous",
        batch=args.batch, image_size=args.image_size, conv_gflop_per_step=conv_gflop,
        ours_ms=ours_ms, torch_ms=torch_ms, ours_img_s=img_s(ours_ms), torch_img_s=img_s(torch_ms),
        speedup=torch_ms / ours_ms if ours_ms and torch_ms else None,
        rel_err=ours_err, torch_rel_err=torch_err, tolerance=tol, ok=ok, error=error,
        card=info["card"], driver=info["driver"], torch_version=info["torch_version"],
        commit=info["commit"], date=info["date"], threads=info["threads"], load_avg=info["load_avg"],
        command=command,
    )


def markdown(r):
    from .report import fmt as f

    e = lambda v: "–" if v is None else f"{v:.1e}"  # noqa: E731
    check = "ok" if r.ok else f"**FAIL**: {r.error}"
    return "\n".join([
        f"### end to end · {r.device} · {r.dtype} · {r.layout}: ResNet-18 training step "
        f"(batch {r.batch}, {r.image_size}x{r.image_size}, SGD)\n",
        f"{r.card}, torch {r.torch_version}" + (f", driver {r.driver}" if r.driver else "")
        + f", {r.threads} threads, load average {r.load_avg} at start; commit `{r.commit}`; {r.date}.  ",
        f"Command: `{r.command}`\n",
        "| model | conv GFLOP/step | nn.Conv2d ms | MyConv2d ms | nn.Conv2d img/s | MyConv2d img/s "
        "| speedup | ours rel err | torch rel err | check |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {r.model} | {f(r.conv_gflop_per_step)} | {f(r.torch_ms)} | {f(r.ours_ms)} | {f(r.torch_img_s)} "
        f"| {f(r.ours_img_s)} | {f(r.speedup)} | {e(r.rel_err)} | {e(r.torch_rel_err)} | {check} |",
        "",
    ])


def main(argv=None):
    import json

    from . import machine
    from .report import ensure_parent

    args = parse_args(argv)
    record = run(args, machine.command("python -m benchmarks.e2e", sys.argv[1:] if argv is None else argv))
    if args.json:
        with open(ensure_parent(args.json), "w") as fh:
            json.dump([record.as_dict()], fh, indent=1)
            fh.write("\n")
    text = markdown(record)
    if args.markdown:
        with open(ensure_parent(args.markdown), "w") as fh:
            fh.write(text)
    print(text)
    return 0 if record.ok else 1


if __name__ == "__main__":
    sys.exit(main())
