"""The demos with tiny settings: their numbers checked, their files written."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

for extra in ("matplotlib", "plotly", "sklearn", "tqdm"):
    pytest.importorskip(extra, reason="the demos need the `demo` extra")

from conv_ext.demos import fit, pattern, train  # noqa: E402
from conv_ext.demos.__main__ import main  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _one_thread():
    """As the demos' command line runs them: on tiny convolutions a second
    thread only adds synchronisation, and on a busy machine a lot of it."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def assert_files(paths, count_png):
    assert sum(p.endswith(".png") for p in paths) == count_png
    for path in paths:
        assert os.path.getsize(path) > 1000, path
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        if path.endswith(".png"):
            assert head.startswith(PNG_MAGIC), path
        else:  # self-contained: plotly.js inlined, no script fetched from elsewhere
            with open(path, encoding="utf-8") as f:
                text = f.read()
            assert path.endswith(".html") and '<script src="http' not in text
            assert "Plotly.newPlot" in text and len(text) > 1_000_000


# --------------------------------------------------------------------- pattern
def test_pattern_maps_are_the_kernels_convolutions(device):
    detector = pattern.line_detector(device)
    images, _ = pattern.make_images(2, torch.Generator().manual_seed(3))
    noisy = pattern.add_noise(images, 1.0, torch.Generator().manual_seed(4)).to(device)
    expected = F.conv2d(noisy.cpu().double(), pattern.kernels().double(), padding=1)
    torch.testing.assert_close(detector(noisy).cpu().double(), expected, rtol=1e-5, atol=1e-5)


def test_pattern_finds_every_line_in_noise_free_images(device):
    detector = pattern.line_detector(device)
    images, truth = pattern.make_images(8, torch.Generator().manual_seed(1))
    found = pattern.detect(pattern.profiles(detector(images.to(device))), pattern.thresholds(detector))
    for name, counts in zip(pattern.NAMES, pattern.score(found, truth)):
        if name == "zeros":
            assert counts.reported == 0 and counts.recall == 0
        else:
            assert counts.hits == counts.reported == counts.real == 8 * pattern.LINES, name


def test_line_positions_are_distinct_and_never_adjacent():
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        positions = pattern.line_positions(10, 100, generator)
        assert positions.min() >= 0 and positions.max() < 100
        assert (positions.diff() >= 2).all()


def test_pattern_sweep_degrades_with_noise():
    detector = pattern.line_detector()
    precision, recall = pattern.noise_sweep(detector, [0.0, 20.0], 10, torch.Generator().manual_seed(2))
    line_kernels = [k for k, n in enumerate(pattern.NAMES) if n != "zeros"]
    assert (recall[0, line_kernels] == 1).all() and (precision[0, line_kernels] == 1).all()
    assert (recall[1, line_kernels] < 0.9).all() or (precision[1, line_kernels] < 0.9).all()


def test_pattern_run_writes_its_figures(tmp_path):
    result = pattern.run(str(tmp_path), amplitudes=[0.0, 1.0, 6.0], trials=4)
    assert_files(result.files, count_png=5)
    assert result.summary().startswith("pattern: noise-free image: 30 of 30 lines found, 0 false")


# ------------------------------------------------------------------------- fit
def test_lesson_image_is_the_demos_image():
    """The notebook draws the image with lesson_image; run() must draw the
    same one from the same seed, so the notebook's maps are the demo's."""
    clean, truth, noisy = pattern.lesson_image(torch.Generator().manual_seed(5))
    assert clean.shape == noisy.shape == (1, 1, pattern.SIZE, pattern.SIZE)
    rows, cols = truth
    assert (clean[0, 0, :, cols] == 1).all() and (clean[0, 0, rows, :] == 1).all()
    assert clean.sum() == pattern.SIZE * 2 * pattern.LINES - pattern.LINES ** 2
    assert 0 < (noisy - clean).abs().max() <= pattern.LESSON_NOISE


def test_pattern_plotly_figures_hold_the_maps():
    from conv_ext.demos import pattern_figures

    clean, _, noisy = pattern.lesson_image(torch.Generator().manual_seed(0))
    with torch.no_grad():
        maps = pattern.line_detector()(noisy)[0]
    image = pattern_figures.image_figure(clean[0, 0], noisy[0, 0])
    assert len(image.data) == 2
    fmap = pattern_figures.maps_figure(maps)
    assert len(fmap.data) == 4
    # float32, two decimals: within 0.005 of the map, and half float64's size
    for k, trace in enumerate(fmap.data):
        z = torch.as_tensor(trace.z)
        assert z.dtype == torch.float32
        torch.testing.assert_close(z, maps[k], rtol=0, atol=0.0051)
    assert len(pattern_figures.kernels_figure().data) == 4
    assert len(pattern_figures.activations_figure(maps[3]).data) == 4


def test_fit_weights_figure_has_a_tick_per_weight():
    from conv_ext.demos import fit_figures

    result = fit.run("unused", steps=20, every=10, figures=False, progress=False)
    figure = fit_figures.weights_figure(result)
    assert len(figure.data) == 3 * len(result.snapshots)
    assert len(figure.layout.sliders[0].steps) == len(result.snapshots)
    for axis in ("xaxis", "xaxis2", "xaxis3", "yaxis", "yaxis2", "yaxis3"):
        layout = figure.layout[axis]
        assert (layout.tickmode, layout.tick0, layout.dtick) == ("linear", 0, 1), axis


def test_fit_recovers_the_filter(tmp_path, device):
    result = fit.run(str(tmp_path), device=device, steps=300, lr=0.2, every=100,
                     figures=device == "cpu", progress=False)
    assert result.final_error < 1e-3
    assert [s for s, _ in result.snapshots] == [0, 100, 200, 300]
    assert "converged" in result.summary() and "NOT" not in result.summary()
    if device == "cpu":
        assert_files(result.files, count_png=2)


def test_fit_error_shrinks_at_the_predicted_rate():
    result = fit.run("unused", steps=150, lr=0.1, figures=False, progress=False)
    # Past the transient (the one steep direction), what is left of the error
    # lies in the eight shallow directions: it shrinks no slower than the
    # slowest of them and no faster than the fastest.
    late = result.errors[50:]
    measured = (late[-1] / late[0]) ** (1 / (len(late) - 1))
    shallow = result.eigenvalues[:8]
    fastest = fit.contraction(shallow[-1:], result.lr, result.momentum)
    assert fastest - 1e-4 <= measured <= result.rate + 1e-4, (fastest, measured, result.rate)


def test_contraction_of_plain_gradient_descent():
    eigenvalues = torch.tensor([0.5, 2.0])
    assert fit.contraction(eigenvalues, 0.1, 0.0) == pytest.approx(0.95)
    assert fit.contraction(eigenvalues, 1.1, 0.0) == pytest.approx(1.2)  # diverges
    assert fit.steps_needed(1.0, 1.2) == math.inf
    assert fit.steps_needed(1.0, 0.5, tolerance=0.1) == 4


def test_fit_rejects_bad_settings():
    with pytest.raises(ValueError, match="steps"):
        fit.run("unused", steps=0, figures=False, progress=False)
    with pytest.raises(ValueError, match="lr"):
        fit.run("unused", lr=-1.0, figures=False, progress=False)


# ----------------------------------------------------------------------- train
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_train_losses_match_nn_conv2d(device, dtype, tol):
    result = train.run("unused", device=device, epochs=2, max_batches=6, dtype=dtype,
                       figures=False, progress=False)
    assert len(result.ours.losses) == len(result.reference.losses) == 12
    torch.testing.assert_close(torch.tensor(result.ours.losses),
                               torch.tensor(result.reference.losses), rtol=tol, atol=tol)


def test_train_uses_my_conv2d_and_reaches_95_percent(tmp_path):
    result = train.run(str(tmp_path), progress=False)
    from conv_ext import MyConv2d
    assert isinstance(result.ours.model[0], MyConv2d) and isinstance(result.ours.model[2], MyConv2d)
    assert type(result.reference.model[0]) is torch.nn.Conv2d
    assert result.ours.accuracy[-1] >= 0.95 and result.reference.accuracy[-1] >= 0.95
    assert len(result.ours.seconds) == result.epochs
    assert_files(result.files, count_png=2)


# ------------------------------------------------------------------ the command
def test_command_line_runs_a_demo(tmp_path, capsys):
    docs = tmp_path / "docs"
    main(["fit", "--out", str(tmp_path / "out"), "--steps", "40", "--lr", "0.2", "--seed", "3",
          "--docs", str(docs)])
    out = capsys.readouterr().out
    assert out.startswith("fit: 40 steps, lr 0.2") and "figures in" in out
    assert sorted(os.listdir(tmp_path / "out")) == ["fit.html", "fit_curves.png", "fit_weights.png"]
    assert sorted(os.listdir(docs)) == ["demo_fit_curves.png", "demo_fit_weights.png"]
    for name in os.listdir(docs):
        assert os.path.getsize(docs / name) < os.path.getsize(tmp_path / "out" / name[5:])


def test_command_line_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        main(["pattern", "--out", str(tmp_path), "--threads", "-1"])
    with pytest.raises(SystemExit):
        main(["nonsense", "--out", str(tmp_path)])
