"""python -m benchmarks.layers: where a network's training step spends its
convolution time. Every distinct convolution of the e2e models
(benchmarks/models.py), at the input the network feeds it, runs one pass
(default forward_backward) ours against torch, verified then timed like a
suite shape; each layer's time counts as often as the network calls it.

The tables list, per model, the layer kinds (dense k x k, 1x1, depthwise
k x k, grouped with c channels per group; stride) with their share of the
step's convolution time and their speedup, then the layers that lose the
most time against torch. A kind that is slow here and missing from the shape
suite belongs in benchmarks/shapes.py."""
import argparse
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass

from . import models as model_zoo
from .limits import PASSES


@dataclass
class LayerRecord:
    model: str
    layer: str  # the first module of the model with this shape
    kind: str
    dims: str
    calls: int  # how many convolutions of the model have this shape
    pass_name: str
    ours_ms: float | None  # one call
    torch_ms: float | None
    speedup: float | None
    rel_err: float | None
    ok: bool
    error: str | None

    def as_dict(self):
        return asdict(self)


def kind(shape):
    """A layer's kind as the kernels see it, e.g. 'dw3x3 s2', 'g16 3x3 s1',
    '1x1 s1', '3x3 s1' (dense)."""
    k = f"{shape.r}x{shape.s}"
    if shape.groups > 1 and shape.cg == 1:
        return f"dw{k} s{shape.stride}"
    if shape.groups > 1:
        return f"g{shape.cg} {k} s{shape.stride}"
    return f"{k} s{shape.stride}"


def distinct_layers(name, batch, image_size):
    """[(Shape, calls)] of model `name`, in order of first call."""
    from .shapes import Shape

    found = {}
    model = model_zoo.build(name)
    for layer, (n, c, h, w), _, m in model_zoo.conv_layers(model, image_size, batch):
        # The models use square kernels, equal strides and symmetric padding (Shape's convention).
        assert m.kernel_size[0] == m.kernel_size[1] and m.stride[0] == m.stride[1], layer
        assert m.padding[0] == m.padding[1] and m.dilation[0] == m.dilation[1], layer
        key = (n, c, h, w, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0], m.groups)
        if key in found:
            found[key][1] += 1
        else:
            n_, c_, h_, w_, k, r, st, p, d, g = key
            found[key] = [Shape(f"{name}:{layer}", n_, c_, h_, w_, k, r, r, st, p, d, g), 1]
    return [tuple(v) for v in found.values()]


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.layers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=list(model_zoo.MODELS), default=list(model_zoo.MODELS),
                   metavar="MODEL", help=f"models (default all: {', '.join(model_zoo.MODELS)})")
    p.add_argument("--pass", dest="pass_name", choices=PASSES, default="forward_backward",
                   help="the pass timed per layer (default forward_backward)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--quick", action="store_true", help="few repetitions (CI)")
    p.add_argument("--reps", type=int, help="exact number of timed repetitions per layer")
    p.add_argument("--threads", type=int, help="torch.set_num_threads before running")
    p.add_argument("--json", metavar="PATH", help="write the records as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the Markdown tables")
    p.add_argument("--top", type=int, default=8, help="layers listed per model, most time lost first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("batch", "image_size", "reps", "threads", "top"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.image_size < 32:
        parser.error(f"--image-size must be >= 32 (five stride-2 stages), got {args.image_size}")
    return args


def run(args, command):
    """(setup dict, [LayerRecord]) for the CPU, float32."""
    import torch

    import conv_ext  # noqa: F401  (registers torch.ops.conv_ext)

    from . import limits, machine, passes, timing
    from .cli import progress

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine.describe("cpu")
    setup = {k: info.get(k) for k in ("card", "isa", "torch_version", "commit", "date", "threads", "load_avg")}
    setup["command"] = command
    todo = [(name, shape, calls) for name in args.models
            for shape, calls in distinct_layers(name, args.batch, args.image_size)]
    plan = timing.budget("cpu", args.quick, args.reps)
    ceilings = limits.Ceilings(1.0, "not measured", 1.0)  # the limit columns are not reported here
    meta = {k: setup[k] for k in ("card", "torch_version", "commit", "date", "threads", "load_avg")}
    meta.update(driver=None, command=command)
    bar = progress(len(todo), args.no_progress)
    records = []
    try:
        for name, shape, calls in todo:
            bar.set_postfix_str(shape.name)
            problem = passes.make_problem(shape, "cpu", "float32")
            r = passes.run(problem, args.pass_name, "cpu", "float32", ceilings, plan, meta)
            records.append(LayerRecord(
                model=name, layer=shape.name.split(":", 1)[1], kind=kind(shape), dims=shape.describe(),
                calls=calls, pass_name=args.pass_name, ours_ms=r.ours_ms, torch_ms=r.torch_ms,
                speedup=r.speedup, rel_err=r.rel_err, ok=r.ok, error=r.error))
            bar.update(1)
    finally:
        bar.close()
    setup["load_avg_end"] = machine.load_average()
    return setup, records


def by_kind(records):
    """{kind: (ours ms, torch ms, calls)} per step, summed over the layers."""
    out = defaultdict(lambda: [0.0, 0.0, 0])
    for r in records:
        if r.ours_ms is None:
            continue
        acc = out[r.kind]
        acc[0] += r.calls * r.ours_ms
        acc[1] += r.calls * r.torch_ms
        acc[2] += r.calls
    return {k: tuple(v) for k, v in out.items()}


def markdown(setup, records, top):
    from .report import fmt

    s = setup
    parts = [f"### convolutions of the e2e models, layer by layer · cpu · float32 · {records[0].pass_name}\n"
             if records else "", f"{s['card']}; {s['isa']}; torch {s['torch_version']}, {s['threads']} threads, "
             f"load average {s['load_avg']} at start, {s.get('load_avg_end')} at the end; commit `{s['commit']}`; "
             f"{s['date']}.  ", f"Command: `{s['command']}`\n",
             "Per step: each distinct layer's median time times the number of the model's layers with its "
             "shape. Speedup = torch / ours.\n"]
    for name in dict.fromkeys(r.model for r in records):
        mine = [r for r in records if r.model == name]
        kinds = by_kind(mine)
        ours_total = sum(v[0] for v in kinds.values())
        torch_total = sum(v[1] for v in kinds.values())
        failed = [r for r in mine if not r.ok]
        parts.append(f"#### {name}: convolutions {fmt(torch_total)} ms with torch, {fmt(ours_total)} ms ours "
                     f"per step ({fmt(torch_total / ours_total if ours_total else None)}x)"
                     + (f"; **{len(failed)} layer(s) failed their check**" if failed else "") + "\n")
        parts.append("| kind | layers | torch ms | ours ms | speedup | share of ours |")
        parts.append("|---|---|---|---|---|---|")
        for k, (o, t, calls) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
            parts.append(f"| {k} | {calls} | {fmt(t)} | {fmt(o)} | {fmt(t / o if o else None)} "
                         f"| {fmt(100 * o / ours_total if ours_total else None, 2)} % |")
        parts.append("")
        parts.append(f"Layers that lose the most time (up to {top}):\n")
        parts.append("| layer | shape | calls | torch ms | ours ms | speedup | time lost per step ms | check |")
        parts.append("|---|---|---|---|---|---|---|---|")
        lost = sorted((r for r in mine if r.ours_ms is not None), key=lambda r: -r.calls * (r.ours_ms - r.torch_ms))
        for r in lost[:top] + failed:
            check = "ok" if r.ok else f"**FAIL**: {r.error}"
            loss = r.calls * (r.ours_ms - r.torch_ms) if r.ours_ms is not None else None
            parts.append(f"| {r.layer} | {r.dims} | {r.calls} | {fmt(r.torch_ms)} | {fmt(r.ours_ms)} "
                         f"| {fmt(r.speedup)} | {fmt(loss)} | {check} |")
        parts.append("")
    return "\n".join(parts)


def main(argv=None):
    import json

    from . import machine
    from .report import ensure_parent

    args = parse_args(argv)
    setup, records = run(args, machine.command("python -m benchmarks.layers", sys.argv[1:] if argv is None else argv))
    if args.json:
        with open(ensure_parent(args.json), "w") as fh:
            json.dump({"setup": setup, "layers": [r.as_dict() for r in records]}, fh, indent=1)
            fh.write("\n")
    text = markdown(setup, records, args.top)
    if args.markdown:
        with open(ensure_parent(args.markdown), "w") as fh:
            fh.write(text)
    print(text)
    return 0 if all(r.ok for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
