"""python -m benchmarks: every pass of every suite shape, ours against torch
in the same process, verified then timed, with the machine's limits measured
in the same run."""
import argparse
import sys

from . import shapes
from .limits import PASSES

DTYPE_NAMES = ("float32", "tf32", "float64", "float16", "bfloat16")

EPILOG = """\
dtypes: float32 on CUDA is exact FP32 (allow_tf32 off for cuDNN and matmul);
tf32 is float32 with allow_tf32 on (PyTorch's default for convolutions), CUDA
only. speedup = torch time / ours (above 1: ours faster). limit_pct =
100 * time_at_limit / time, time_at_limit = max(FLOPs / matmul rate, minimum
bytes / copy bandwidth), both limits measured by torch in the same run.
Exit status 1 when any check failed or raised, after writing the reports."""


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", nargs="+", choices=DTYPE_NAMES, default=["float32"], metavar="DTYPE",
                   help=f"one or more of {', '.join(DTYPE_NAMES)} (default float32)")
    p.add_argument("--shapes", nargs="+", choices=shapes.NAMES, metavar="NAME",
                   help="suite shapes to run (default: the device's suite; with --quick: "
                        f"{', '.join(shapes.QUICK)}). Names: {', '.join(shapes.NAMES)}")
    p.add_argument("--passes", nargs="+", choices=PASSES, default=list(PASSES), metavar="PASS",
                   help=f"passes to run (default all: {', '.join(PASSES)})")
    p.add_argument("--channels-last", action="store_true",
                   help="input, weight and grad_output in channels_last (NHWC) memory format")
    p.add_argument("--quick", action="store_true",
                   help="quick subset of shapes, few repetitions, smaller ceiling measurements (CI)")
    p.add_argument("--reps", type=int, help="exact number of timed repetitions (default: by time budget)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads before running (CPU)")
    p.add_argument("--json", metavar="PATH", help="write the records as a JSON list")
    p.add_argument("--markdown", metavar="PATH", help="write the Markdown tables")
    p.add_argument("--plot", metavar="PATH", help="write the speedup plot (PNG)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv=None):
    """Parsed and cross-checked arguments; errors exit with usage (status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "cpu" and "tf32" in args.dtype:
        parser.error("--dtype tf32 is a CUDA mode (TF32 tensor cores); on CPU use float32")
    if args.reps is not None and args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    args.dtype = list(dict.fromkeys(args.dtype))
    return args


def progress(total, disable):
    """A tqdm bar on stderr, or a silent stand-in without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        disable = True
    if disable:
        class Silent:
            def update(self, n=1):
                pass

            def set_postfix_str(self, s):
                pass

            def close(self):
                pass
        return Silent()
    return tqdm(total=total, unit="pass", dynamic_ncols=True, file=sys.stderr)


def run(args, command):
    """Runs the benchmark described by `args`; returns the records."""
    import torch

    from . import limits, machine, passes, timing

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
    import conv_ext  # noqa: F401  (registers torch.ops.conv_ext)

    if args.threads:
        torch.set_num_threads(args.threads)
    meta = machine.describe(args.device)
    meta = {k: meta.get(k) for k in ("card", "driver", "torch_version", "commit", "date", "threads", "load_avg",
                                     "isa")}
    meta["command"] = command
    chosen = shapes.select(args.device, args.shapes, args.quick)
    plan = timing.budget(args.device, args.quick, args.reps)
    bar = progress(len(args.dtype) * len(chosen) * len(args.passes), args.no_progress)
    records = []
    try:
        for dtype in args.dtype:
            with limits.tf32_mode(args.device, dtype == "tf32"):
                bar.set_postfix_str(f"{dtype}: measuring limits")
                ceilings = limits.measure(args.device, dtype, args.quick)
                mine = []
                for shape in chosen:
                    problem = passes.make_problem(shape, args.device, dtype, args.channels_last)
                    for pass_name in args.passes:
                        bar.set_postfix_str(f"{dtype} {shape.name} {pass_name}")
                        mine.append(passes.run(problem, pass_name, args.device, dtype, ceilings, plan, meta))
                        bar.update(1)
                    del problem
                    if args.device == "cuda":
                        torch.cuda.empty_cache()
                # Limits measured before and after the passes; the better of the two counts.
                bar.set_postfix_str(f"{dtype}: measuring limits again")
                ceilings = ceilings.best(limits.measure(args.device, dtype, args.quick))
                records += [passes.with_ceilings(r, ceilings) for r in mine]
    finally:
        bar.close()
    return records


def main(argv=None):
    from . import machine, report

    args = parse_args(argv)
    records = run(args, machine.command("python -m benchmarks", sys.argv[1:] if argv is None else argv))
    if args.json:
        report.write_json(records, args.json)
    if args.markdown:
        report.write_markdown(records, args.markdown)
    if args.plot:
        report.plot_speedup(records, args.plot)
    print(report.markdown(records))
    failed = [r for r in records if not r.ok]
    for r in failed:
        print(f"FAILED {r.device} {r.dtype} {r.shape} {r.pass_name}: {r.error}", file=sys.stderr)
    return 1 if failed else 0
