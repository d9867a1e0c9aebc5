"""The end-to-end results out: a Markdown table of the training steps (one
row per model, the geomean under it), the per-call overhead table, and a PNG
of the speedups with their range over the rounds, from the dict that
python -m benchmarks.e2e writes as JSON."""
from .report import ensure_parent, fmt, geomean

TITLES = {
    "resnet18": "ResNet-18", "mobilenet_v2": "MobileNetV2", "efficientnet_b0": "EfficientNet-B0",
    "regnetx_400mf": "RegNetX-400MF", "shufflenet_v2": "ShuffleNetV2 1.0x",
}
OVERHEAD_GOAL = 1.2  # issue 14: a tiny MyConv2d call within 1.2x nn.Conv2d's time


def _err(v):
    return "–" if v is None else f"{v:.1e}"


def _range(r):
    if r["speedup_min"] is None:
        return "–"
    return f"{fmt(r['speedup_min'])}–{fmt(r['speedup_max'])}"


def _precision(r):
    """The dtype column of a record: its dtype, or its autocast."""
    return f"{r['dtype']} under autocast({r['autocast']})" if r.get("autocast") else r["dtype"]


def _setup_lines(setup, rounds, autocast=None):
    s = setup
    where = f"{s['card']}" + (f"; {s['isa']}" if s.get("isa") else "") + f"; torch {s['torch_version']}"
    if s.get("driver"):
        where += f", driver {s['driver']}"
    load = f"load average {s['load_avg']} at start, {s.get('load_avg_end')} at the end"
    return [
        f"{where}, {s['threads']} threads, {load}; commit `{s['commit']}`; {s['date']}.  ",
        f"Command: `{s['command']}`\n",
        f"Each step: forward, cross-entropy, backward, SGD update; ours is the same model after "
        f"`conv_ext.replace_conv2d`."
        + (f" Mixed precision: float32 parameters, forward and loss under "
           f"`torch.autocast(dtype=torch.{autocast})`, so every convolution runs in {autocast} "
           f"(the check's forward too)." if autocast else "")
        + f" {rounds} round(s), every model in turn, the steps of ours and torch "
        f"alternating within each; ms is the median of the rounds' medians, the range is the speedup's "
        f"lowest and highest round. Checked first: the loss and every parameter's gradient within 2x "
        f"torch's own error against a float64 copy (ReLU and max pooling smoothed so rounding flips no "
        f"mask; rel err columns), and ours in float64 against torch in float64 on the model as it is.\n",
    ]


def markdown(results):
    models, over = results["models"], results["overhead"]
    parts = []
    if models:
        first = models[0]
        parts.append(f"### end to end · {first['device']} · {_precision(first)} · {first['layout']}: training "
                     f"step (batch {first['batch']}, {first['image_size']}x{first['image_size']}, SGD)\n")
        parts += _setup_lines(results["setup"], max(r["rounds"] for r in models), first.get("autocast"))
        parts.append("| model | convs | conv GFLOP/step | nn.Conv2d ms | MyConv2d ms | nn.Conv2d img/s "
                     "| MyConv2d img/s | speedup | range over rounds | ours rel err | torch rel err "
                     "| float64 rel err | check |")
        parts.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in models:
            check = "ok" if r["ok"] else f"**FAIL**: {r['error']}"
            parts.append(
                f"| {TITLES.get(r['model'], r['model'])} | {r['convs']} | {fmt(r['conv_gflop_per_step'])} "
                f"| {fmt(r['torch_ms'])} | {fmt(r['ours_ms'])} | {fmt(r['torch_img_s'])} | {fmt(r['ours_img_s'])} "
                f"| {fmt(r['speedup'])} | {_range(r)} | {_err(r['rel_err'])} | {_err(r['torch_rel_err'])} "
                f"| {_err(r.get('float64_rel_err'))} | {check} |")
        timed = [r for r in models if r["speedup"]]
        lows = geomean([r["speedup_min"] for r in timed])
        highs = geomean([r["speedup_max"] for r in timed])
        span = f"{fmt(lows)}–{fmt(highs)}" if lows else "–"
        parts.append(f"| **geomean** | | | | | | | **{fmt(results.get('geomean_speedup'))}** | {span} | | | | "
                     f"{len(timed)} of {len(models)} timed |")
        parts.append("")
    elif results.get("setup"):
        parts += _setup_lines(results["setup"], 0)
    if over:
        parts.append(f"#### per-call overhead: {over[0]['layer']}\n")
        parts.append("Microseconds per call: the median of interleaved samples, each a loop of calls "
                     "divided by its length; forward+backward computes the input, weight and bias "
                     f"gradients. Goal: ours / torch <= {OVERHEAD_GOAL}.\n")
        parts.append("| case | samples x calls | nn.Conv2d us | MyConv2d us | ours / torch | goal met | check |")
        parts.append("|---|---|---|---|---|---|---|")
        for o in over:
            check = "ok" if o["ok"] else f"**FAIL**: {o['error']}"
            met = "–" if o["ratio"] is None else ("yes" if o["ratio"] <= OVERHEAD_GOAL else "no")
            parts.append(f"| {o['case']} | {o['samples']} x {o['calls_per_sample']} | {fmt(o['torch_us'])} "
                         f"| {fmt(o['ours_us'])} | {fmt(o['ratio'])} | {met} | {check} |")
        parts.append("")
    return "\n".join(parts)


def plot(results, path):
    """Bars of torch time / ours per model (and their geomean), from 1.0 up
    or down on a log axis, whiskers from the lowest to the highest round;
    beside them the per-call overhead as torch / ours with the goal marked.
    A model whose check failed is marked x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    models, over = results["models"], results["overhead"]
    if over:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    else:  # --autocast and --no-overhead runs: the steps alone
        fig, ax = plt.subplots(figsize=(10, 3.8))
        ax2 = None
    names = [TITLES.get(r["model"], r["model"]) for r in models] + ["geomean"]
    values = [r["speedup"] or float("nan") for r in models] + [results.get("geomean_speedup") or float("nan")]
    lows = [r["speedup_min"] or v for r, v in zip(models, values)]
    highs = [r["speedup_max"] or v for r, v in zip(models, values)]
    # The geomean's whisker: the geomeans of the lowest and of the highest rounds, as the table gives.
    lows.append(geomean([r["speedup_min"] for r in models]) or values[-1])
    highs.append(geomean([r["speedup_max"] for r in models]) or values[-1])
    xs = range(len(names))
    colours = ["tab:blue"] * len(models) + ["tab:gray"]
    ax.bar(xs, [v - 1 for v in values], 0.6, bottom=1.0, color=colours)
    ax.errorbar(xs, values, yerr=[[max(0.0, v - lo) for v, lo in zip(values, lows)],
                                  [max(0.0, hi - v) for v, hi in zip(values, highs)]],
                fmt="none", ecolor="black", capsize=4, linewidth=1)
    for x, r in zip(xs, models):
        if not r["ok"]:
            ax.plot(x, 1.0, "kx", markersize=9)
    finite = [v for v in lows + highs if v == v and v > 0] + [1.0]
    ax.set_yscale("log")
    ax.set_ylim(min(finite) / 1.3, max(finite) * 1.3)
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("torch step time / ours")
    setup = results["setup"]
    if models:
        m = models[0]
        ax.set_title(f"training step, batch {m['batch']}, {m['image_size']}x{m['image_size']}, {_precision(m)} "
                     f"(above 1: ours faster)", fontsize=9)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.set_axisbelow(True)

    if ax2 is not None:
        cases = [o["case"].replace("_", " ") for o in over]
        ratios = [o["speedup"] or float("nan") for o in over]
        ax2.bar(range(len(cases)), [v - 1 for v in ratios], 0.6, bottom=1.0, color="tab:orange")
        ax2.axhline(1.0, color="black", linewidth=1, linestyle="--")
        ax2.axhline(1 / OVERHEAD_GOAL, color="tab:red", linewidth=1, linestyle=":",
                    label=f"goal: ours within {OVERHEAD_GOAL}x")
        ax2.set_yscale("log")
        fin = [v for v in ratios if v == v and v > 0] + [1.0, 1 / OVERHEAD_GOAL]
        ax2.set_ylim(min(fin) / 1.3, max(fin) * 1.5)
        ax2.set_xticks(range(len(cases)))
        ax2.set_xticklabels(cases, fontsize=8)
        ax2.set_xlabel(over[0]["layer"] if over else "", fontsize=7)
        ax2.set_title("per-call overhead (torch / ours)", fontsize=9)
        ax2.legend(fontsize=7, loc="upper left")
        ax2.grid(axis="y", which="both", alpha=0.3)
    # ticks at 0.5, 1, 2 rather than 5x10^-1
    for axis in [ax.yaxis] + ([ax2.yaxis] if ax2 is not None else []):
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        axis.set_minor_formatter(NullFormatter())
    fig.suptitle(f"{setup['card']}" + (f", {setup['isa']}" if setup.get("isa") else "")
                 + f", {setup['threads']} threads, commit {setup['commit']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(ensure_parent(path), dpi=90)
    plt.close(fig)
