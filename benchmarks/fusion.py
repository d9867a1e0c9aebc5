"""python -m benchmarks.fusion: what fusing the activation into the
convolution saves. For each shape and activation, three contenders computing
the same thing, verified against each other, then timed side by side:

  fused     conv_ext.conv2d(..., activation=a)   one kernel writes act(conv)
  unfused   a(conv_ext.conv2d(...))              our conv, then torch's activation
  torch     a(F.conv2d(...))                     torch's conv, then its activation

forward, and forward+backward through autograd (the fused backward computes
the activation's gradient from the output once, for all three gradients)."""
import argparse
import sys

import torch
import torch.nn.functional as F

from . import passes, shapes, timing

ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
               "leaky_relu": lambda y: F.leaky_relu(y, 0.01)}
SHAPES = {False: ["seed_pattern", "r50_res2_3x3", "r50_res4_3x3", "mbv2_dw_3x3"],
          True: ["seed_pattern", "grouped_3x3"]}


def contenders(problem, activation, pass_name):
    import conv_ext

    stride, pad, dil, groups = problem.conf
    act = ACTIVATIONS[activation]
    convs = {
        "fused": lambda x, w, b: conv_ext.conv2d(x, w, b, stride, pad, dil, groups, activation=activation),
        "unfused": lambda x, w, b: act(conv_ext.conv2d(x, w, b, stride, pad, dil, groups)),
        "torch": lambda x, w, b: act(F.conv2d(x, w, b, stride, pad, dil, groups)),
    }
    if pass_name == "forward":
        return {k: (lambda c=c: c(problem.x, problem.w, problem.b)) for k, c in convs.items()}
    leaves = [t.detach().requires_grad_() for t in (problem.x, problem.w, problem.b)]

    def through_autograd(conv):
        def step():
            y = conv(*leaves)
            return (y, *torch.autograd.grad(y, leaves, problem.gy))
        return step

    return {k: through_autograd(c) for k, c in convs.items()}


def run(args):
    rows = []
    names = args.shapes or SHAPES[args.quick]
    plan = timing.budget(args.device, args.quick, args.reps)
    for name in names:
        shape = shapes.get(name, args.device)
        problem = passes.make_problem(shape, args.device, "float32")
        for activation in args.activations:
            for pass_name in ("forward", "forward_backward"):
                fns = contenders(problem, activation, pass_name)
                results = {k: fn() for k, fn in fns.items()}
                err = max(passes.rel_err(results["fused"], results[k]) for k in ("unfused", "torch"))
                ok = err < 1e-4
                ms = timing.compare(list(fns.values()), args.device, plan) if ok else [float("nan")] * 3
                row = dict(shape=name, activation=activation, pass_=pass_name, rel_err=err, ok=ok,
                           **{f"{k}_ms": t for k, t in zip(fns, ms)})
                row["saving_pct"] = 100 * (1 - row["fused_ms"] / row["unfused_ms"])
                rows.append(row)
                print(f"{name:14s} {activation:10s} {pass_name:16s} fused {row['fused_ms']:.3f} ms  "
                      f"unfused {row['unfused_ms']:.3f} ms  torch {row['torch_ms']:.3f} ms  "
                      f"saved {row['saving_pct']:+.1f}%  err {err:.1e}{'' if ok else '  FAIL'}", flush=True)
    return rows


def markdown(rows):
    lines = ["| shape | activation | pass | fused ms | conv then act ms | torch ms | fusion saves | rel err |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['activation']} | {r['pass_']} | {r['fused_ms']:.3g} | "
                     f"{r['unfused_ms']:.3g} | {r['torch_ms']:.3g} | {r['saving_pct']:+.1f} % | {r['rel_err']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.fusion", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--shapes", nargs="+", help="suite shape names (default: a representative few)")
    p.add_argument("--activations", nargs="+", choices=list(ACTIVATIONS), default=["relu", "tanh"])
    p.add_argument("--quick", action="store_true", help="two small shapes, few repetitions (CI)")
    p.add_argument("--reps", type=int, help="exact number of timed repetitions")
    p.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    rows = run(args)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(rows))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
