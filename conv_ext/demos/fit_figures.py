"""The fit demo's figures: the loss and weight-error curves, the snapshots of
learned / target / difference as annotated heatmaps, and one HTML page."""
from .figures import annotated_heatmap, plotly, pyplot, save_png, write_html
from .fit import TOLERANCE


def write_all(out, result):
    return [curves_png(out, result), snapshots_png(out, result), page(out, result)]


def _predicted(result):
    """The predicted error envelope start_error * rate**t, as a curve."""
    start = result.errors[0]
    return [start * result.rate ** t for t in range(len(result.errors))]


def curves_png(out, result):
    plt = pyplot()
    fig, (loss_ax, err_ax) = plt.subplots(1, 2, figsize=(11, 4))
    steps = range(1, len(result.losses) + 1)
    loss_ax.semilogy(steps, result.losses, color="tab:blue")
    loss_ax.set_title("MSE loss (log scale)", fontsize=10)
    loss_ax.set_ylabel("MSE between output and target image")
    err_ax.semilogy(range(len(result.errors)), result.errors, color="tab:green",
                    label="measured")
    err_ax.semilogy(range(len(result.errors)), _predicted(result), "--", color="gray",
                    label=f"predicted from the Hessian: x{result.rate:.4f} per step")
    err_ax.axhline(TOLERANCE, color="tab:red", ls=":", lw=1, label=f"{TOLERANCE:g}")
    err_ax.set_title("largest |learned - target| weight (log scale)", fontsize=10)
    err_ax.legend(fontsize=8)
    for ax in (loss_ax, err_ax):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
        for step, _ in result.snapshots:
            ax.axvline(step, color="lightgray", lw=0.6, zorder=0)
    fig.suptitle(f"Learning a 3x3 filter: SGD lr {result.lr:g}, momentum {result.momentum:g}, "
                 f"{result.steps} steps (grey lines: snapshots)", fontsize=11)
    return save_png(fig, out, "fit_curves.png")


def snapshots_png(out, result):
    """Columns are snapshots; rows are learned, target and their difference.
    Learned and target share one colour scale, the differences another,
    symmetric around 0, fixed across snapshots so the fading shows."""
    plt = pyplot()
    snaps = result.snapshots
    all_weights = [w for _, w in snaps] + [result.target_filter]
    lo = min(w.min().item() for w in all_weights)
    hi = max(w.max().item() for w in all_weights)
    span = max((w - result.target_filter).abs().max().item() for _, w in snaps)
    fig, axes = plt.subplots(3, len(snaps), figsize=(1.5 * len(snaps) + 1.2, 5.2), squeeze=False)
    for col, (step, weights) in enumerate(snaps):
        shown = annotated_heatmap(axes[0, col], weights, lo, hi, cmap="viridis",
                                  title=f"step {step}", fontsize=7)
        annotated_heatmap(axes[1, col], result.target_filter, lo, hi, cmap="viridis", fontsize=7)
        diff = annotated_heatmap(axes[2, col], weights - result.target_filter, -span, span,
                                 fontsize=7)
    for row, label in enumerate(("learned", "target", "learned -\ntarget")):
        axes[row, 0].set_ylabel(label, fontsize=10)
    fig.colorbar(shown, ax=list(axes[:2].flat), fraction=0.015, pad=0.01, label="weight")
    fig.colorbar(diff, ax=list(axes[2]), fraction=0.015, pad=0.01, label="difference")
    verdict = "converged" if result.final_error < TOLERANCE else f"not yet below {TOLERANCE:g}"
    fig.suptitle(f"The MyConv2d's weights every {_every(snaps)} steps (lr {result.lr:g}): final "
                 f"largest error {result.final_error:.2g}, {verdict}", fontsize=11)
    return save_png(fig, out, "fit_weights.png")


def _every(snaps):
    return snaps[1][0] - snaps[0][0] if len(snaps) > 1 else 0


def weights_figure(result):
    """learned / target / difference heatmaps with a slider over the
    snapshots (plotly); rows and columns are labelled by their index."""
    go, subplots = plotly()
    weights = subplots.make_subplots(1, 3, subplot_titles=("learned", "target", "learned - target"))
    span = max((w - result.target_filter).abs().max().item() for _, w in result.snapshots)
    per_snapshot = 3
    for i, (step, w) in enumerate(result.snapshots):
        panels = (w, result.target_filter, w - result.target_filter)
        for col, z in enumerate(panels, start=1):
            z = z.double().numpy()
            weights.add_trace(go.Heatmap(
                z=z, text=z, texttemplate="%{text:.3f}", visible=i == 0, showscale=False,
                colorscale="RdBu_r" if col == 3 else "Viridis",
                zmin=-span if col == 3 else None, zmax=span if col == 3 else None), 1, col)
    count = len(result.snapshots)
    slider = [dict(label=str(step), method="update",
                   args=[{"visible": [j // per_snapshot == i for j in range(per_snapshot * count)]}])
              for i, (step, _) in enumerate(result.snapshots)]
    weights.update_layout(sliders=[dict(steps=slider, currentvalue=dict(prefix="step "))],
                          height=420)
    # One tick per weight: plotly's default ticks (-0.5, 0, 0.5, ...) fall
    # between the rows and columns of a 3x3 filter.
    weights.update_xaxes(tickmode="linear", tick0=0, dtick=1)
    weights.update_yaxes(autorange="reversed", tickmode="linear", tick0=0, dtick=1)
    return weights


def page(out, result):
    go, subplots = plotly()
    curves = subplots.make_subplots(1, 2, subplot_titles=("MSE loss", "largest weight error"))
    curves.add_trace(go.Scatter(x=list(range(1, len(result.losses) + 1)), y=result.losses,
                                name="loss"), 1, 1)
    curves.add_trace(go.Scatter(y=result.errors, name="weight error"), 1, 2)
    curves.add_trace(go.Scatter(y=_predicted(result), name="predicted", line_dash="dash"), 1, 2)
    curves.update_yaxes(type="log")
    curves.update_xaxes(title_text="step")

    weights = weights_figure(result)

    return write_html(out, "fit.html", "Learning a 3x3 filter with MyConv2d", result.summary(), [
        ("Loss and weight error", "Both fall geometrically; the dashed line is the rate the "
         "Hessian's eigenvalues predict for the slowest direction.", curves),
        ("The weights, step by step", "Drag the slider: the learned filter approaches the target "
         "and the difference fades.", weights),
    ])
