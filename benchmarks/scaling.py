"""python -m benchmarks.scaling: forward+backward time of one 3x3 layer
(64 -> 64 channels, padding 1, with bias) against batch size and against image
size, ours and torch, verified then timed side by side, plotted on log-log
axes. Work grows as the batch and as the pixel count, so a curve parallel to
the dotted line (time proportional to work) means cost grows with work and
nothing else; a flat start shows fixed overhead (launches, threads,
allocation)."""
import argparse
import sys

from . import shapes

CHANNELS = 64
# (batches at BATCH_IMAGE pixels, image sizes at IMAGE_BATCH images)
SWEEPS = {
    ("cuda", False): ([1, 2, 4, 8, 16, 32, 64, 128, 256], [7, 14, 28, 56, 112, 224]),
    ("cuda", True): ([1, 4, 16], [14, 56]),
    ("cpu", False): ([1, 2, 4, 8, 16], [7, 14, 28, 56, 112]),
    ("cpu", True): ([1, 2, 4], [8, 16, 32]),
}
BATCH_IMAGE = {("cuda", False): 56, ("cuda", True): 28, ("cpu", False): 56, ("cpu", True): 16}
IMAGE_BATCH = {"cuda": 32, "cpu": 2}


def layer(name, n, size):
    """The swept layer: ResNet-50's res2 3x3 at batch n and size x size images."""
    return shapes.Shape(name, n, CHANNELS, size, size, CHANNELS, 3, 3, 1, 1, 1, 1)


def points(device, quick):
    """[(sweep, x, Shape)]: the batch sweep, then the image-size sweep; each
    shape is named for its sweep and point ('batch16', 'image56')."""
    batches, sizes = SWEEPS[(device, bool(quick))]
    out = [("batch", n, layer(f"batch{n}", n, BATCH_IMAGE[(device, bool(quick))])) for n in batches]
    out += [("image", s, layer(f"image{s}", IMAGE_BATCH[device], s)) for s in sizes]
    return out


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=("float32", "tf32", "float64", "float16", "bfloat16"), default="float32")
    p.add_argument("--quick", action="store_true", help="few small points, few repetitions (CI)")
    p.add_argument("--reps", type=int, help="exact number of timed repetitions")
    p.add_argument("--threads", type=int, help="torch.set_num_threads before running (CPU)")
    p.add_argument("--json", metavar="PATH", help="write the records as a JSON list")
    p.add_argument("--plot", metavar="PATH", help="write the log-log plot (PNG)")
    p.add_argument("--no-progress", action="store_true")
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "cpu" and args.dtype == "tf32":
        parser.error("--dtype tf32 is a CUDA mode (TF32 tensor cores); on CPU use float32")
    if args.reps is not None and args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    return args


def run(args, command):
    """[(sweep, x, Record)] for every point of both sweeps."""
    import torch

    from . import limits, machine, passes, timing
    from .cli import progress

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    import conv_ext  # noqa: F401

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine.describe(args.device)
    meta = {k: info.get(k) for k in ("card", "driver", "torch_version", "commit", "date", "threads", "load_avg",
                                     "isa")}
    meta["command"] = command
    plan = timing.budget(args.device, args.quick, args.reps)
    todo = points(args.device, args.quick)
    bar = progress(len(todo), args.no_progress)
    out = []
    try:
        with limits.tf32_mode(args.device, args.dtype == "tf32"):
            ceilings = limits.measure(args.device, args.dtype, args.quick)
            for sweep, x, shape in todo:
                bar.set_postfix_str(f"{sweep} {x}")
                problem = passes.make_problem(shape, args.device, args.dtype)
                out.append((sweep, x, passes.run(problem, "forward_backward", args.device, args.dtype,
                                                  ceilings, plan, meta)))
                bar.update(1)
            # Limits measured before and after; the better of the two counts.
            ceilings = ceilings.best(limits.measure(args.device, args.dtype, args.quick))
            out = [(sweep, x, passes.with_ceilings(r, ceilings)) for sweep, x, r in out]
    finally:
        bar.close()
    return out


def markdown(results):
    first = results[0][2]
    lines = [f"### scaling · {first.device} · {first.dtype} · forward+backward of a 3x3 layer, "
             f"{CHANNELS} -> {CHANNELS} channels\n",
             f"{first.card}, torch {first.torch_version}, {first.threads} threads"
             + (f"; {first.isa}" if first.isa else "") + "; "
             f"load average {first.load_avg} at start; commit `{first.commit}`; {first.date}.  ",
             f"Command: `{first.command}`\n",
             "| sweep | point | ours ms | torch ms | speedup | ours % limit | torch % limit | rel err | check |",
             "|---|---|---|---|---|---|---|---|---|"]
    from .report import fmt as f

    for sweep, x, r in results:
        check = "ok" if r.ok else f"**FAIL**: {r.error}"
        lines.append(f"| {sweep} | {r.dims} | {f(r.ours_ms)} | {f(r.torch_ms)} | {f(r.speedup)} "
                     f"| {f(r.limit_pct)} | {f(r.torch_limit_pct)} "
                     f"| {'–' if r.rel_err is None else f'{r.rel_err:.1e}'} | {check} |")
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    from . import report

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = results[0][2]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, sweep, label in ((axes[0], "batch", "batch size"), (axes[1], "image", "image size (H = W)")):
        pts = [(x, r) for s, x, r in results if s == sweep]
        xs = [x for x, _ in pts]
        for key, name, style in (("ours_ms", "conv_ext", "o-"), ("torch_ms", "torch", "s-")):
            ys = [getattr(r, key) for _, r in pts]
            ax.plot([x for x, y in zip(xs, ys) if y], [y for y in ys if y], style, label=name)
        torch_pts = [(x, r.torch_ms) for x, r in pts if r.torch_ms]
        if torch_pts:
            # Through torch's largest point: time proportional to work (N, or H*W).
            x1, y1 = torch_pts[-1]
            power = 1 if sweep == "batch" else 2
            ax.plot(xs, [y1 * (x / x1) ** power for x in xs], "k:", linewidth=1, label="∝ work")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("forward+backward ms")
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"3x3 conv {CHANNELS}->{CHANNELS}, {first.device} {first.dtype}: {first.card}", fontsize=9)
    fig.tight_layout()
    fig.savefig(report.ensure_parent(path), dpi=90)
    plt.close(fig)


def main(argv=None):
    from . import machine, report

    args = parse_args(argv)
    results = run(args, machine.command("python -m benchmarks.scaling", sys.argv[1:] if argv is None else argv))
    if args.json:
        report.write_json([r for _, _, r in results], args.json)
    if args.plot:
        plot(results, args.plot)
    print(markdown(results))
    return 0 if all(r.ok for _, _, r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
