"""What the demos share for drawing: matplotlib on the Agg backend (files,
no window), annotated 3x3 heatmaps, and one self-contained HTML page per demo
holding several plotly figures with plotly.js inlined (opens offline).

matplotlib and plotly are imported here, lazily, so `import conv_ext` never
needs the `demo` extra."""
import html
import os

DPI = 80  # small enough for README PNGs, large enough to read annotations


def pyplot():
    """matplotlib.pyplot on the Agg backend: the demos write files and must
    run on machines without a display."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "the demos need matplotlib, plotly, scikit-learn and tqdm: "
            "pip install 'conv_ext[demo]'") from err
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def plotly():
    """(plotly.graph_objects, plotly.subplots) with the same install hint."""
    try:
        import plotly.graph_objects as go
        from plotly import subplots
    except ImportError as err:
        raise ImportError("the demos need plotly: pip install 'conv_ext[demo]'") from err
    return go, subplots


def save_png(fig, out, name):
    """Writes `fig` to out/name, closes it, returns the path."""
    plt = pyplot()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def annotated_heatmap(ax, values, vmin, vmax, cmap="RdBu_r", fmt="{:.2f}", title=None,
                      fontsize=8):
    """A small matrix drawn as a heatmap with every value written in its
    cell, in black or white, whichever reads better on the cell's colour."""
    plt = pyplot()
    values = values.detach().cpu().double().numpy()
    image = ax.imshow(values, vmin=vmin, vmax=vmax, cmap=cmap)
    colours = plt.get_cmap(cmap)
    span = (vmax - vmin) or 1.0
    for (r, c), v in _cells(values):
        red, green, blue, _ = colours(min(max((v - vmin) / span, 0.0), 1.0))
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
        ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=fontsize,
                color="white" if dark else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return image


def _cells(values):
    for r in range(values.shape[0]):
        for c in range(values.shape[1]):
            yield (r, c), float(values[r, c])


def compressed_copy(path, folder, prefix="demo_"):
    """A copy of the PNG at `path` in `folder`, named prefix + its name, with
    its colours reduced to a 256-colour palette: a third of the size for the
    README, no visible change on these plots."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, prefix + os.path.basename(path))
    with Image.open(path) as image:
        palette = image.convert("RGB").quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette.save(target, optimize=True)
    return target


def write_html(out, name, title, intro, sections):
    """One self-contained page: a title, an introduction, then for each
    (heading, text, plotly figure) a heading, a paragraph and the figure.
    plotly.js is inlined once, with the first figure."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;"
        "line-height:1.45;padding:0 1em}h2{margin-top:2em}</style>",
        "</head><body>", f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>",
    ]
    for i, (heading, text, fig) in enumerate(sections):
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts.append("</body></html>")
    path = os.path.join(out, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path
