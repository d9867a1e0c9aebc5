"""The train demo's figures: loss curves and their gap, accuracy and seconds
per epoch, the first layer's learned filters, and one HTML page."""
import torch

from .figures import plotly, pyplot, save_png, write_html

REF, OURS = "nn.Conv2d", "MyConv2d (conv_ext)"
REF_COLOUR, OURS_COLOUR = "tab:gray", "tab:orange"


def write_all(out, result):
    return [curves_png(out, result), filters_png(out, result), page(out, result)]


def _gaps(result):
    # A gap of exactly 0 has no place on a log axis; it is drawn at 1e-10.
    return [max(abs(a - b), 1e-10) for a, b in zip(result.reference.losses, result.ours.losses)]


def curves_png(out, result):
    plt = pyplot()
    ref, ours = result.reference, result.ours
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.3, 1.3, 1]})
    steps = range(1, len(ours.losses) + 1)
    axes[0].plot(steps, ref.losses, color=REF_COLOUR, lw=3, alpha=0.6, label=REF)
    axes[0].plot(steps, ours.losses, color=OURS_COLOUR, lw=1, label=OURS)
    axes[0].set_yscale("log")
    axes[0].set_title("training loss per batch (the two curves overlap)", fontsize=10)
    axes[0].set_ylabel("cross-entropy")
    axes[0].legend(fontsize=8)

    axes[1].semilogy(steps, _gaps(result), ".", ms=3, color="tab:purple")
    axes[1].set_ylim(1e-10 / 2, 1)
    axes[1].set_title("|loss difference| (0 drawn at 1e-10): float32 rounding", fontsize=10)
    axes[1].set_ylabel("absolute difference")
    for ax in axes[:2]:
        ax.set_xlabel("step (batch of 64)")
        ax.grid(alpha=0.3)

    speeds = [result.per_epoch(ref), result.per_epoch(ours)]
    bars = axes[2].bar([REF, OURS], speeds, color=[REF_COLOUR, OURS_COLOUR])
    for bar, run, s in zip(bars, (ref, ours), speeds):
        axes[2].text(bar.get_x() + bar.get_width() / 2, s, f"{s:.3f} s\nacc {100 * run.accuracy[-1]:.1f} %",
                     ha="center", va="bottom", fontsize=9)
    axes[2].set_ylim(0, max(speeds) * 1.35)
    axes[2].set_ylabel("seconds per epoch (median)")
    axes[2].set_title(f"speed ({result.where}) and test accuracy", fontsize=10)
    fig.suptitle(f"A CNN on scikit-learn's digits, {result.epochs} epochs, trained with nn.Conv2d "
                 "and with MyConv2d from the same initial weights", fontsize=11)
    return save_png(fig, out, "train_curves.png")


def filters_png(out, result):
    """The 16 first-layer filters MyConv2d learned, beside some test digits
    with its predictions: the filters are the learned cousins of the
    hand-made line kernels of the pattern demo."""
    plt = pyplot()
    span = result.filters.abs().max().item()
    fig = plt.figure(figsize=(13, 2.7))
    left, right = fig.subfigures(1, 2, width_ratios=[1, 1.1])
    ax = left.subplots()
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="white")
    shown = ax.imshow(_mosaic(result.filters, columns=8).numpy(), cmap=cmap, vmin=-span, vmax=span)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.axis("off")
    left.colorbar(shown, ax=ax, fraction=0.03, pad=0.02, shrink=0.7, label="weight")
    left.suptitle("the 16 first-layer 3x3 filters MyConv2d learned (shared scale)", fontsize=10)

    axes = right.subplots(2, 8, gridspec_kw={"hspace": 0.45})
    wrong = (result.predicted != result.test_y).nonzero().flatten().tolist()
    right_ones = (result.predicted == result.test_y).nonzero().flatten().tolist()
    picks = (wrong[:4] + right_ones)[:16]
    for ax, i in zip(axes.flat, picks):
        ax.imshow(result.test_x[i, 0].numpy(), cmap="gray_r", vmin=0, vmax=1)
        ok = result.predicted[i] == result.test_y[i]
        ax.set_title(f"{result.predicted[i].item()} (true {result.test_y[i].item()})",
                     fontsize=8, color="black" if ok else "tab:red")
        ax.set_xticks([])
        ax.set_yticks([])
    right.suptitle(f"test digits: prediction (true label), errors in red, "
                   f"{len(wrong)} of {len(result.test_y)} wrong", fontsize=10)
    return save_png(fig, out, "train_filters.png")


def _mosaic(filters, columns):
    """Small filters tiled into one image, a blank (NaN) pixel between them."""
    count, h, w = filters.shape
    rows = -(-count // columns)
    tiles = torch.full((rows * (h + 1) - 1, columns * (w + 1) - 1), float("nan"))
    for i, f in enumerate(filters):
        r, c = divmod(i, columns)
        tiles[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = f
    return tiles


def page(out, result):
    go, subplots = plotly()
    ref, ours = result.reference, result.ours
    steps = list(range(1, len(ours.losses) + 1))
    losses = go.Figure([go.Scatter(x=steps, y=ref.losses, name=REF, line_width=4, opacity=0.5),
                        go.Scatter(x=steps, y=ours.losses, name=OURS)])
    losses.update_layout(xaxis_title="step", yaxis_title="cross-entropy", yaxis_type="log")

    gap = go.Figure(go.Scatter(x=steps, y=_gaps(result), mode="markers", name="|difference|"))
    gap.update_layout(xaxis_title="step", yaxis_title="|loss difference|", yaxis_type="log")

    epochs = list(range(1, result.epochs + 1))
    per_epoch = subplots.make_subplots(1, 2, subplot_titles=("test accuracy", "seconds per epoch"))
    for run, name in ((ref, REF), (ours, OURS)):
        per_epoch.add_trace(go.Scatter(x=epochs, y=run.accuracy, name=name, legendgroup=name), 1, 1)
        per_epoch.add_trace(go.Scatter(x=epochs, y=run.seconds, name=name, legendgroup=name,
                                       showlegend=False), 1, 2)
    per_epoch.update_xaxes(title_text="epoch")

    span = result.filters.abs().max().item()
    filters = subplots.make_subplots(2, 8)
    for i, f in enumerate(result.filters):
        filters.add_trace(go.Heatmap(z=f.numpy(), coloraxis="coloraxis"), i // 8 + 1, i % 8 + 1)
    filters.update_layout(coloraxis=dict(colorscale="RdBu_r", cmin=-span, cmax=span), height=380)
    filters.update_yaxes(autorange="reversed", showticklabels=False)
    filters.update_xaxes(showticklabels=False)

    return write_html(out, "train.html", "A CNN on digits: nn.Conv2d against MyConv2d",
                      result.summary(), [
        ("Training loss", "Same initial weights, same batches: the curves lie on each other.", losses),
        ("How far apart", "The two runs add the same products in different orders; float32 "
         "rounding makes them differ in the last bits, and training slowly amplifies that.", gap),
        ("Accuracy and time per epoch", "Epochs of the two runs are interleaved, so load on the "
         "machine slows both alike; the first epoch includes warm-up.", per_epoch),
        ("Learned first-layer filters", "Compare with the hand-made line kernels of the pattern "
         "demo.", filters),
    ])
