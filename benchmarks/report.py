"""Records out: JSON (a list of records), Markdown (one table per device,
dtype and layout, with a summary of geomean speedups), and a PNG of the
speedup per shape and pass on a log axis with 1.0 marked."""
import json
import math
import os
from collections import defaultdict

from .limits import PASSES
from .record import Record
from .shapes import family

# Summaries are per family of shapes: the public suite's geomean stays
# comparable with earlier runs, the network layers' goal is each >= 1.
FAMILY_TITLES = {"suite": "Public suite (BASELINES.md)",
                 "network": "Layers of real networks (batch 8, as the e2e models feed them)"}


def ensure_parent(path):
    """Creates the folder that will hold `path`; returns path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return path


def write_json(records, path):
    with open(ensure_parent(path), "w") as f:
        json.dump([r.as_dict() for r in records], f, indent=1)
        f.write("\n")


def read_json(path):
    with open(path) as f:
        return [Record.from_dict(d) for d in json.load(f)]


def groups(records):
    """Records grouped by (device, dtype, layout), in first-seen order."""
    out = defaultdict(list)
    for r in records:
        out[(r.device, r.dtype, r.layout)].append(r)
    return dict(out)


def geomean(values):
    values = [v for v in values if v is not None and v > 0]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summary(records):
    """Per pass: (geomean speedup, worst speedup, its shape, timed count,
    failed count), over the records of one group."""
    rows = {}
    for p in PASSES:
        mine = [r for r in records if r.pass_name == p]
        if not mine:
            continue
        timed = [r for r in mine if r.speedup is not None]
        worst = min(timed, key=lambda r: r.speedup) if timed else None
        rows[p] = (geomean([r.speedup for r in timed]), worst.speedup if worst else None,
                   worst.shape if worst else None, len(timed), sum(not r.ok for r in mine))
    return rows


def fmt(value, digits=3):
    """A number for a table: `digits` significant digits, integers from 100 up."""
    if value is None:
        return "–"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def _rate(tflops, device):
    """TFLOP/s on GPU, GFLOP/s on CPU (where rates are in the tens)."""
    if tflops is None:
        return "–"
    return fmt(tflops if device != "cpu" else tflops * 1e3)


def markdown(records):
    """The Markdown report: per group a header with the setup and the limits
    measured, a summary of speedups per pass, and the full table."""
    parts = []
    for (device, dtype, layout), rs in groups(records).items():
        first = rs[0]
        unit = "GFLOP/s" if device == "cpu" else "TFLOP/s"
        setup = f"{first.card}, torch {first.torch_version}"
        if first.driver:
            setup += f", driver {first.driver}"
        if device == "cpu":
            setup += f", {first.threads} threads"
            if first.isa:
                setup += f"; {first.isa}"
        if first.load_avg is not None:
            setup += f", load average {first.load_avg} at start"
        parts.append(f"### {device} · {dtype} · {layout}\n")
        parts.append(f"{setup}; commit `{first.commit}`; {first.date}.  ")
        parts.append(f"Command: `{first.command}`  ")
        rate = first.rate_tflops * (1e3 if device == "cpu" else 1)
        parts.append(f"Limits measured in this run: {first.rate_source} at {fmt(rate)} {unit}, "
                     f"copy at {fmt(first.bandwidth_gbs)} GB/s (read + write).\n")

        families = list(dict.fromkeys(family(r.shape) for r in rs))
        for fam in families:
            if len(families) > 1:
                parts.append(f"{FAMILY_TITLES[fam]}:\n")
            parts.append("| pass | geomean speedup | worst (shape) | timed | failed |")
            parts.append("|---|---|---|---|---|")
            for p, (gm, worst, worst_shape, timed, failed) in summary(
                    [r for r in rs if family(r.shape) == fam]).items():
                worst_txt = f"{fmt(worst)} ({worst_shape})" if worst is not None else "–"
                parts.append(f"| {p} | {fmt(gm)} | {worst_txt} | {timed} | {failed} |")
            parts.append("")

        parts.append(f"| shape | pass | ours ms | torch ms | speedup | ours {unit} | torch {unit} "
                     "| ours % limit | torch % limit | rel err | check |")
        parts.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rs:
            check = "ok" if r.ok else f"**FAIL**: {r.error}"
            parts.append(
                f"| {r.shape} | {r.pass_name} | {fmt(r.ours_ms)} | {fmt(r.torch_ms)} "
                f"| {fmt(r.speedup)} | {_rate(r.ours_tflops, device)} | {_rate(r.torch_tflops, device)} "
                f"| {fmt(r.limit_pct, 2)} | {fmt(r.torch_limit_pct, 2)} "
                f"| {'–' if r.rel_err is None else f'{r.rel_err:.1e}'} | {check} |")
        parts.append("")
    return "\n".join(parts)


def write_markdown(records, path):
    with open(ensure_parent(path), "w") as f:
        f.write(markdown(records))


def plot_speedup(records, path):
    """Bars of torch time / ours per shape, one colour per pass, log scale,
    one panel per (device, dtype, layout). Failed checks are marked x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = groups(records)
    widest = max(len({r.shape for r in rs}) for rs in grouped.values())
    fig, axes = plt.subplots(len(grouped), 1, figsize=(max(11, 0.5 * widest), 3.6 * len(grouped)),
                             squeeze=False)
    for ax, ((device, dtype, layout), rs) in zip(axes[:, 0], grouped.items()):
        shapes = list(dict.fromkeys(r.shape for r in rs))
        passes = [p for p in PASSES if any(r.pass_name == p for r in rs)]
        width = 0.8 / max(1, len(passes))
        for j, p in enumerate(passes):
            by_shape = {r.shape: r for r in rs if r.pass_name == p}
            xs = [i + (j - (len(passes) - 1) / 2) * width for i in range(len(shapes))]
            speedups = [by_shape[s].speedup if s in by_shape and by_shape[s].speedup else float("nan")
                        for s in shapes]
            # Bars grow from 1.0: up where ours is faster, down where slower.
            ax.bar(xs, [v - 1 for v in speedups], width, bottom=1.0, label=p)
            for x, s in zip(xs, shapes):
                if s in by_shape and not by_shape[s].ok:
                    ax.plot(x, 1.0, "kx", markersize=8)
        ax.set_yscale("log")
        timed = [r.speedup for r in rs if r.speedup] + [1.0]
        ax.set_ylim(min(timed) / 1.5, max(timed) * 6)  # headroom for the legend
        ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels(shapes, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("torch time / ours")
        ax.set_title(f"{rs[0].card}: {device} {dtype} {layout} (above 1: ours faster)", fontsize=9)
        ax.legend(fontsize=7, ncol=len(passes), loc="upper left")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.set_axisbelow(True)
    fig.tight_layout()
    fig.savefig(ensure_parent(path), dpi=90)
    plt.close(fig)


def main(argv=None):
    """python -m benchmarks.report A.json [B.json ...]: the Markdown (and
    optionally the plot) of saved runs, e.g. to merge a GPU and a CPU run."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__)
    p.add_argument("json", nargs="+", help="JSON files written by python -m benchmarks --json")
    p.add_argument("--markdown", metavar="PATH", help="write the Markdown here (default: print it)")
    p.add_argument("--plot", metavar="PATH", help="write the speedup plot (PNG)")
    args = p.parse_args(argv)
    records = [r for path in args.json for r in read_json(path)]
    if args.markdown:
        write_markdown(records, args.markdown)
    else:
        print(markdown(records))
    if args.plot:
        plot_speedup(records, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
