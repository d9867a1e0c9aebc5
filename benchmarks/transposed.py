"""python -m benchmarks.transposed: transposed convolutions, conv_ext against
torch, on the up-sampling layers of a DCGAN generator and a U-Net decoder.

ours:  conv_ext.conv_transpose2d (forward = conv2d_backward_input; its
       backward = conv2d_forward, conv2d_backward_weight, conv2d_backward_bias)
torch: F.conv_transpose2d (oneDNN on the CPU, cuDNN on CUDA)

Two passes: forward, and forward+backward through autograd (output and the
three gradients). Each pass is verified against torch first, then both are
timed interleaved (benchmarks/timing.py). The comparison is repeated in
`--rounds` independent rounds; the spread of the speedup across rounds says
how noisy the machine was during the run."""
import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from . import limits, machine, report, timing
from .passes import DTYPES, TOLERANCE


@dataclass(frozen=True)
class TransposedShape:
    """One transposed convolution: input (N, C_in, H, W), weight
    (C_in, C_out/groups, R, R), output (N, C_out, H_out, W_out); stride,
    padding and output_padding equal along H and W."""

    name: str
    n: int
    c_in: int
    h: int
    c_out: int
    r: int
    stride: int
    pad: int = 0
    out_pad: int = 0
    groups: int = 1

    @property
    def h_out(self):
        return (self.h - 1) * self.stride - 2 * self.pad + (self.r - 1) + self.out_pad + 1

    @property
    def flops(self):
        """Multiply-adds x 2 of the forward: every input pixel meets every
        tap of its group's C_out/groups output channels."""
        return 2 * self.n * self.c_in * self.h * self.h * (self.c_out // self.groups) * self.r * self.r

    def describe(self):
        return (f"N{self.n} C{self.c_in} {self.h}x{self.h} -> C{self.c_out} {self.h_out}x{self.h_out} "
                f"{self.r}x{self.r} s{self.stride} p{self.pad} op{self.out_pad}")


# The GPU batch of each family; the CPU batch (CPU_BATCH) keeps a full CPU run
# in minutes on two cores.
#                  name          N   C_in   H  C_out  R  str pad out_pad
SUITE = tuple(TransposedShape(*row) for row in (
    # DCGAN generator (Radford et al. 2016; the PyTorch example: nz 100,
    # ngf 64, 64x64 images, batch 128): 4x4 kernels, stride 2, padding 1.
    ("dcgan_g1",   128,  100,   1,  512, 4, 1, 0),
    ("dcgan_g2",   128,  512,   4,  256, 4, 2, 1),
    ("dcgan_g3",   128,  256,   8,  128, 4, 2, 1),
    ("dcgan_g4",   128,  128,  16,   64, 4, 2, 1),
    ("dcgan_g5",   128,   64,  32,    3, 4, 2, 1),
    # U-Net decoder (Ronneberger et al. 2015) on 256x256 images with padded
    # convolutions: 2x2 up-convolutions, stride 2, halving the channels.
    ("unet_up1",    16, 1024,  16,  512, 2, 2, 0),
    ("unet_up2",    16,  512,  32,  256, 2, 2, 0),
    ("unet_up3",    16,  256,  64,  128, 2, 2, 0),
    ("unet_up4",    16,  128, 128,   64, 2, 2, 0),
    # A 3x3 stride-2 decoder block with output_padding 1 (LinkNet, ENet).
    ("linknet_up",  16,  128,  32,   64, 3, 2, 1, 1),
))
NAMES = tuple(s.name for s in SUITE)
CPU_BATCH = {"dcgan": 16, "unet": 1, "linknet": 2}
QUICK = ("dcgan_g2", "dcgan_g5", "unet_up3", "linknet_up")
PASSES = ("forward", "forward_backward")


def for_device(shape, device):
    if device == "cpu":
        return replace(shape, n=CPU_BATCH[shape.name.split("_")[0]])
    return shape


def select(device, names=None, quick=False):
    """The named shapes in suite order, else the quick subset or all of them,
    with `device`'s batch. Unknown names raise ValueError."""
    if names:
        unknown = [n for n in names if n not in NAMES]
        if unknown:
            raise ValueError(f"unknown shape(s) {unknown}; expected names from {list(NAMES)}")
    chosen = [s for s in SUITE if (s.name in names if names else (not quick or s.name in QUICK))]
    return [for_device(s, device) for s in chosen]


def make_tensors(shape, device, dtype, channels_last=False, seed=0):
    """Input, weight (scaled by 1/sqrt of the taps reaching an output),
    bias and a grad_output for the output."""
    gen = torch.Generator().manual_seed(seed)
    fan = shape.c_in // shape.groups * shape.r * shape.r / shape.stride ** 2

    def rand(size, scale=1.0):
        t = (torch.randn(size, generator=gen) * scale).to(device=device, dtype=dtype)
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t

    x = rand((shape.n, shape.c_in, shape.h, shape.h))
    w = rand((shape.c_in, shape.c_out // shape.groups, shape.r, shape.r), 1 / math.sqrt(max(fan, 1)))
    b = rand((shape.c_out,))
    gy = rand((shape.n, shape.c_out, shape.h_out, shape.h_out))
    return x, w, b, gy


def contenders(shape, tensors, pass_name):
    """(ours, torch) callables of one pass; each returns what it computed."""
    import conv_ext

    x, w, b, gy = tensors
    conf = (shape.stride, shape.pad, shape.out_pad, shape.groups)
    fns = (conv_ext.conv_transpose2d, F.conv_transpose2d)
    if pass_name == "forward":
        return [lambda f=f: f(x, w, b, *conf) for f in fns]
    leaves = [t.detach().requires_grad_() for t in (x, w, b)]

    def through_autograd(f):
        def step():
            y = f(*leaves, *conf)
            return (y, *torch.autograd.grad(y, leaves, gy))
        return step

    return [through_autograd(f) for f in fns]


def rel_err(ours, theirs):
    """max |ours - torch| / max |torch| over the tensors of a pass."""
    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        if a.shape != b.shape:
            return math.inf
        scale = b.double().abs().max().item() or 1.0
        worst = max(worst, (a.double() - b.double()).abs().max().item() / scale)
    return worst


def run_one(shape, pass_name, args, plan):
    dtype = DTYPES[args.dtype]
    tensors = make_tensors(shape, args.device, dtype, args.channels_last)
    ours, theirs = contenders(shape, tensors, pass_name)
    as_tuple = lambda r: r if isinstance(r, tuple) else (r,)  # noqa: E731
    err = rel_err(as_tuple(ours()), as_tuple(theirs()))
    row = dict(shape=shape.name, describe=shape.describe(), pass_=pass_name, rel_err=err,
               ok=err <= TOLERANCE[args.dtype], ours_ms=None, torch_ms=None, speedup=None, spread=None)
    if not row["ok"]:
        return row
    rounds = [timing.compare([ours, theirs], args.device, plan) for _ in range(args.rounds)]
    speedups = [t / o for o, t in rounds]
    row["ours_ms"] = statistics.median(o for o, _ in rounds)
    row["torch_ms"] = statistics.median(t for _, t in rounds)
    row["speedup"] = statistics.median(speedups)
    row["spread"] = (min(speedups), max(speedups))
    flops = shape.flops * (3 if pass_name == "forward_backward" else 1)
    row["ours_gflops"] = flops / row["ours_ms"] / 1e6
    return row


def run(args):
    plan = timing.budget(args.device, args.quick, args.reps)
    rows = []
    for shape in select(args.device, args.shapes, args.quick):
        for pass_name in args.passes:
            row = run_one(shape, pass_name, args, plan)
            rows.append(row)
            if row["ok"]:
                lo, hi = row["spread"]
                print(f"{shape.name:11s} {pass_name:16s} ours {row['ours_ms']:8.3f} ms  torch {row['torch_ms']:8.3f} ms"
                      f"  speedup {row['speedup']:.2f} ({lo:.2f}-{hi:.2f})  {row['ours_gflops']:.1f} GFLOP/s"
                      f"  err {row['rel_err']:.1e}", flush=True)
            else:
                print(f"{shape.name:11s} {pass_name:16s} FAIL: rel err {row['rel_err']:.2e} vs torch", flush=True)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    return rows


def markdown(rows, meta):
    setup = f"{meta['card']}, torch {meta['torch_version']}"
    if meta["device"] == "cpu":
        setup += f", {meta['threads']} threads"
    if meta.get("load_avg") is not None:
        setup += f", load average {meta['load_avg']} at start"
    lines = [f"{setup}; commit `{meta['commit']}`; {meta['date']}.  ",
             f"Command: `{meta['command']}`  ",
             f"Measured in this run: {meta['rates'][0]} before, {meta['rates'][1]} after.\n",
             "| shape | layer | pass | ours ms | torch ms | speedup (min-max over rounds) | ours GFLOP/s | rel err |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r["ok"]:
            lines.append(f"| {r['shape']} | {r['describe']} | {r['pass_']} | – | – | **FAIL** | – | {r['rel_err']:.1e} |")
            continue
        lo, hi = r["spread"]
        lines.append(f"| {r['shape']} | {r['describe']} | {r['pass_']} | {report.fmt(r['ours_ms'])} | "
                     f"{report.fmt(r['torch_ms'])} | {r['speedup']:.2f} ({lo:.2f}-{hi:.2f}) | "
                     f"{report.fmt(r['ours_gflops'])} | {r['rel_err']:.1e} |")
    for p in PASSES:
        timed = [r["speedup"] for r in rows if r["pass_"] == p and r["ok"]]
        if timed:
            lines.append(f"| **geomean** | | {p} | | | **{report.geomean(timed):.2f}** | | |")
    return "\n".join(lines) + "\n"


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.transposed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=("float32", "float64", "float16", "bfloat16"), default="float32")
    p.add_argument("--shapes", nargs="+", metavar="NAME", help=f"shapes to run (default: all): {', '.join(NAMES)}")
    p.add_argument("--passes", nargs="+", choices=PASSES, default=list(PASSES))
    p.add_argument("--channels-last", action="store_true", help="input, weight and grad_output channels_last")
    p.add_argument("--threads", type=int, help="torch.set_num_threads before running (CPU)")
    p.add_argument("--rounds", type=int, default=3, help="independent timing rounds per pass (default 3)")
    p.add_argument("--quick", action="store_true", help="four shapes, few repetitions (CI)")
    p.add_argument("--reps", type=int, help="exact number of timed repetitions per round")
    p.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    p.add_argument("--json", metavar="PATH", help="write the rows and the setup as JSON")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.rounds < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--rounds and --threads must be >= 1")
    try:
        select(args.device, args.shapes)
    except ValueError as e:
        parser.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = machine.describe(args.device)  # before the run: its load average is the neighbours'
    meta["command"] = machine.command("python -m benchmarks.transposed", sys.argv[1:] if argv is None else argv)
    # The machine's matmul rate before and after: how much of it the run had
    # (a shared machine's neighbours show here).
    rates = [limits.measure(args.device, args.dtype, quick=True)]
    rows = run(args)
    rates.append(limits.measure(args.device, args.dtype, quick=True))
    meta["rates"] = [f"{r.rate_source} at {report.fmt(r.rate_tflops * 1e3)} GFLOP/s" for r in rates]
    print(f"limits: {meta['rates'][0]} before the run, {meta['rates'][1]} after", flush=True)
    if args.markdown:
        with open(report.ensure_parent(args.markdown), "w") as f:
            f.write(markdown(rows, meta))
    if args.json:
        with open(report.ensure_parent(args.json), "w") as f:
            json.dump({"setup": meta, "rows": rows}, f, indent=1, default=str)
            f.write("\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
