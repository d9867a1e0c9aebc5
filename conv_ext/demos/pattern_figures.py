"""The pattern demo's figures: PNGs with matplotlib, one HTML page with plotly."""
import torch
import torch.nn.functional as F

from .figures import annotated_heatmap, plotly, pyplot, save_png, write_html
from .pattern import LESSON_NOISE, NAMES, TARGETS, kernels

MAP_CMAP = "viridis"


def activations(flank_map):
    """The lesson's four activations of the flanked kernel's map. leaky_relu
    is taken of map - 1: the shift moves its kink to 1, so weak answers to
    noise are pushed below zero and strong answers on lines stay positive."""
    return {
        "relu(map)": F.relu(flank_map),
        "leaky_relu(map - 1)": F.leaky_relu(flank_map - 1),
        "sigmoid(map)": torch.sigmoid(flank_map),
        "tanh(map)": torch.tanh(flank_map),
    }


def write_all(out, clean, noisy, truth, maps, prof, limits, result):
    return [
        input_png(out, clean, noisy, truth),
        maps_png(out, maps),
        activations_png(out, maps[3]),
        detection_png(out, prof, limits, truth),
        sweep_png(out, result),
        page(out, clean, noisy, maps, prof, limits, truth, result),
    ]


def input_png(out, clean, noisy, truth):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), gridspec_kw={"wspace": 0.35})
    rows, cols = truth
    for ax, image, title in ((axes[0], clean, "clean: 10 vertical + 10 horizontal lines"),
                             (axes[1], noisy, f"noisy: + U(-{LESSON_NOISE:g}, {LESSON_NOISE:g})")):
        shown = ax.imshow(image.numpy(), cmap="gray", interpolation="nearest")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="pixel value")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("column")
    axes[0].set_ylabel("row")
    fig.suptitle(f"The image (line columns {cols.tolist()}, rows {rows.tolist()})", fontsize=9)
    return save_png(fig, out, "pattern_input.png")


def maps_png(out, maps):
    """Each kernel above its feature map; the four maps share one colour
    scale, so their strengths compare at a glance."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.6), gridspec_kw={"height_ratios": [1, 2.4]})
    lo, hi = maps.min().item(), maps.max().item()
    for k, name in enumerate(NAMES):
        annotated_heatmap(axes[0, k], kernels()[k, 0], -1, 1, fmt="{:+.0f}", title=f"kernel: {name}")
        shown = axes[1, k].imshow(maps[k].numpy(), vmin=lo, vmax=hi, cmap=MAP_CMAP, interpolation="nearest")
        axes[1, k].set_title(f"feature map: {name}", fontsize=9)
        axes[1, k].set_xlabel("column")
    axes[1, 0].set_ylabel("row")
    fig.colorbar(shown, ax=list(axes[1]), fraction=0.02, pad=0.02, label="response (shared scale)")
    fig.suptitle("Four 3x3 kernels (top) and their feature maps on the noisy image (bottom), "
                 "computed by one MyConv2d(1, 4, 3, padding=1)", fontsize=11)
    return save_png(fig, out, "pattern_feature_maps.png")


def activations_png(out, flank_map):
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(9, 8.2))
    for ax, (name, value) in zip(axes.flat, activations(flank_map).items()):
        shown = ax.imshow(value.numpy(), cmap=MAP_CMAP, interpolation="nearest")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(name, fontsize=10)
    for ax in axes[1]:
        ax.set_xlabel("column")
    for ax in axes[:, 0]:
        ax.set_ylabel("row")
    fig.suptitle("Activations of the flanked kernel's map (each with its own colour bar: "
                 "their ranges differ by design)", fontsize=10)
    return save_png(fig, out, "pattern_activations.png")


def detection_png(out, prof, limits, truth):
    """How detection works: each kernel's profile, its threshold and the
    true positions."""
    plt = pyplot()
    shown = [k for k, n in enumerate(NAMES) if n != "zeros"]
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 7), sharex=True)
    for ax, k in zip(axes, shown):
        axis = "row" if TARGETS[k] == "h" else "column"
        real = (truth[0] if TARGETS[k] == "h" else truth[1]).tolist()
        ax.plot(prof[k].numpy(), color="tab:blue", lw=1.2, label="map averaged along the line direction")
        ax.axhline(limits[k].item(), color="tab:red", ls="--", lw=1,
                   label="threshold: half of a clean line's answer")
        ax.plot(real, [limits[k].item() * 2.3] * len(real), "v", color="black", ms=5,
                label="true line positions")
        ax.set_ylabel("mean response")
        ax.set_title(f"{NAMES[k]} kernel, mean per {axis}, threshold {limits[k].item():.2f}",
                     fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, 0.95))
    axes[-1].set_xlabel(f"position (column or row), noise U(-{LESSON_NOISE:g}, {LESSON_NOISE:g})")
    fig.suptitle("Line detection: average the map along the line's direction, then threshold",
                 fontsize=11, y=0.99)
    fig.subplots_adjust(top=0.86)
    return save_png(fig, out, "pattern_detection.png")


def sweep_png(out, result):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    styles = ["-o", "-s", ":x", "-^"]
    for k, name in enumerate(NAMES):
        axes[0].plot(result.amplitudes, result.recall[:, k].numpy(), styles[k], ms=4, label=name)
        axes[1].plot(result.amplitudes, result.precision[:, k].numpy(), styles[k], ms=4, label=name)
    for ax, what in zip(axes, ("recall: share of real lines found",
                               "precision: share of found lines that are real")):
        ax.axvline(LESSON_NOISE, color="gray", ls="--", lw=1)
        ax.set_title(what, fontsize=10)
        ax.set_xlabel("noise amplitude a, noise U(-a, a)")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction")
    axes[0].legend(fontsize=8, loc="center left")
    axes[1].text(LESSON_NOISE + 0.1, 0.05, "the lesson's noise", fontsize=8, color="gray")
    fig.suptitle("How well each kernel finds its lines as noise grows "
                 "(zeros kernel: finds nothing, no precision)", fontsize=11)
    return save_png(fig, out, "pattern_noise_sweep.png")


def image_figure(clean, noisy):
    """The clean and the noisy image side by side (plotly)."""
    go, subplots = plotly()
    image = subplots.make_subplots(1, 2, subplot_titles=("clean", "noisy"))
    image.add_trace(go.Heatmap(z=_rounded(clean), colorscale="gray", showscale=False), 1, 1)
    image.add_trace(go.Heatmap(z=_rounded(noisy), colorscale="gray"), 1, 2)
    _square(image, 2)
    return image


def kernels_figure():
    """The four kernels as annotated heatmaps on one -1..1 scale (plotly)."""
    go, subplots = plotly()
    kern = subplots.make_subplots(1, 4, subplot_titles=NAMES)
    for k in range(4):
        kern.add_trace(go.Heatmap(z=kernels()[k, 0].numpy(), coloraxis="coloraxis",
                                  text=kernels()[k, 0].numpy(), texttemplate="%{text:+.0f}"), 1, k + 1)
    kern.update_layout(coloraxis=dict(colorscale="RdBu_r", cmin=-1, cmax=1), height=320)
    _square(kern, 4)
    return kern


def maps_figure(maps):
    """The four feature maps on one shared colour scale (plotly)."""
    go, subplots = plotly()
    fmap = subplots.make_subplots(1, 4, subplot_titles=NAMES)
    for k in range(4):
        fmap.add_trace(go.Heatmap(z=_rounded(maps[k]), coloraxis="coloraxis"), 1, k + 1)
    fmap.update_layout(coloraxis=dict(colorscale="Viridis"), height=380)
    _square(fmap, 4)
    return fmap


def activations_figure(flank_map):
    """The four activations of the flanked kernel's map (plotly)."""
    go, subplots = plotly()
    acts = activations(flank_map)
    act = subplots.make_subplots(2, 2, subplot_titles=list(acts))
    for i, value in enumerate(acts.values()):
        act.add_trace(go.Heatmap(z=_rounded(value), showscale=False), i // 2 + 1, i % 2 + 1)
    act.update_layout(height=800)
    _square(act, 4)
    return act


def _rounded(values, decimals=2):
    """float32 to two decimals: all a colour shows. plotly stores a float64
    array as 8 bytes a value, so float32 halves every page and notebook that
    holds these 100x100 maps, and the rounding keeps them compressible."""
    return values.float().numpy().round(decimals)


def page(out, clean, noisy, maps, prof, limits, truth, result):
    go, subplots = plotly()
    image = image_figure(clean, noisy)
    kern = kernels_figure()
    fmap = maps_figure(maps)
    act = activations_figure(maps[3])

    det = go.Figure()
    for k, name in enumerate(NAMES):
        if name != "zeros":
            det.add_trace(go.Scatter(y=prof[k].numpy(), name=f"{name} (threshold {limits[k].item():.2f})"))
    det.add_trace(go.Scatter(x=truth[1].tolist(), y=[3.3] * len(truth[1]), mode="markers",
                             marker_symbol="triangle-down", name="true columns"))
    det.add_trace(go.Scatter(x=truth[0].tolist(), y=[3.6] * len(truth[0]), mode="markers",
                             marker_symbol="triangle-down", name="true rows"))
    det.update_layout(xaxis_title="position", yaxis_title="mean response")

    sweep = subplots.make_subplots(1, 2, subplot_titles=("recall", "precision"), shared_yaxes=True)
    for k, name in enumerate(NAMES):
        for col, values in ((1, result.recall), (2, result.precision)):
            sweep.add_trace(go.Scatter(x=result.amplitudes, y=values[:, k].tolist(), name=name,
                                       legendgroup=name, showlegend=col == 1), 1, col)
    sweep.update_xaxes(title_text="noise amplitude a, U(-a, a)")

    return write_html(out, "pattern.html", "Finding lines with 3x3 kernels", result.summary(), [
        ("The image", "Ten vertical and ten horizontal lines of value 1, then uniform noise.", image),
        ("The kernels", "Middle column 1 answers to vertical lines, middle row 1 to horizontal "
         "ones, all zeros to nothing; the -1 flanks also punish brightness beside the line.", kern),
        ("Feature maps (shared colour scale)", "One MyConv2d(1, 4, 3, padding=1) holding the four "
         "kernels: a clean line gives 3, the noise blurs it.", fmap),
        ("Activations of the flanked map", "relu cuts negatives, leaky_relu(map - 1) moves the cut "
         "to 1, sigmoid and tanh squash into (0, 1) and (-1, 1).", act),
        ("Detection", "A line fills a whole column (or row): the map averaged along it, compared "
         "with half of a clean line's answer, tells where lines are.", det),
        ("Precision and recall against noise", "Each point pools many random images. The flanked "
         "kernel answers a clean line with the same 3 as the plain vertical one but adds the noise "
         "of two more columns, so in plain noise it fails first. What its flanks buy is rejecting "
         "broad bright regions: inside a band of value b wider than the kernel it answers "
         "3b - 6b = -3b where the plain kernel answers +3b; this image has no such band.", sweep),
    ])


def _square(fig, panels):
    for i in range(1, panels + 1):
        suffix = "" if i == 1 else str(i)
        fig.update_layout({f"yaxis{suffix}": dict(scaleanchor=f"x{suffix}", autorange="reversed")})
