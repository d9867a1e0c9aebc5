"""The benchmark harness: shape suite, FLOP and byte counts, roofline math,
records, CLI parsing, timing order, and tiny end-to-end runs of the three
entry points writing JSON, Markdown and PNG."""
import json
import math
import os
import sys

import pytest
import torch

# benchmarks/ is a top-level package of the repository, not installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import cli, e2e, limits, models, passes, report, scaling, shapes, timing  # noqa: E402
from benchmarks.record import REQUIRED, Record  # noqa: E402

# BASELINES.md, transcribed: (name, N, C, H, W, K, R, S, stride, pad, dil, groups, GFLOP as printed)
BASELINES = [
    ("seed_pattern", 1, 1, 100, 100, 4, 3, 3, 1, 0, 1, 1, "0.0007"),
    ("seed_fit", 1, 1, 50, 50, 1, 3, 3, 1, 1, 1, 1, "0.00005"),
    ("r50_conv1", 32, 3, 224, 224, 64, 7, 7, 2, 3, 1, 1, "7.55"),
    ("r50_res2_3x3", 32, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, "7.40"),
    ("r50_res2_1x1", 32, 64, 56, 56, 256, 1, 1, 1, 0, 1, 1, "3.29"),
    ("r50_res3_3x3", 32, 128, 28, 28, 128, 3, 3, 1, 1, 1, 1, "7.40"),
    ("r50_res4_3x3", 32, 256, 14, 14, 256, 3, 3, 1, 1, 1, 1, "7.40"),
    ("r50_res4_1x1", 32, 1024, 14, 14, 256, 1, 1, 1, 0, 1, 1, "3.29"),
    ("r50_res5_3x3", 32, 512, 7, 7, 512, 3, 3, 1, 1, 1, 1, "7.40"),
    ("r50_down_s2", 32, 256, 56, 56, 512, 1, 1, 2, 0, 1, 1, "6.58"),
    ("vgg_3x3", 16, 128, 112, 112, 128, 3, 3, 1, 1, 1, 1, "59.19"),
    ("dilated_3x3", 8, 256, 32, 32, 256, 3, 3, 1, 2, 2, 1, "9.66"),
    ("mbv2_dw_3x3", 32, 144, 56, 56, 144, 3, 3, 1, 1, 1, 144, "0.26"),
    ("grouped_3x3", 32, 128, 28, 28, 128, 3, 3, 1, 1, 1, 32, "0.23"),
    ("batch1_3x3", 1, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, "0.23"),
]
CPU_SUITE = ["seed_pattern", "seed_fit", "r50_conv1", "r50_res2_3x3", "r50_res2_1x1",
             "r50_res4_3x3", "r50_res5_3x3", "dilated_3x3", "mbv2_dw_3x3", "grouped_3x3"]


# ------------------------------------------------------------------ shapes
def test_suite_matches_baselines():
    assert [s.name for s in shapes.SUITE] == [row[0] for row in BASELINES]
    for shape, row in zip(shapes.SUITE, BASELINES):
        assert (shape.n, shape.c, shape.h, shape.w, shape.k, shape.r, shape.s,
                shape.stride, shape.pad, shape.dil, shape.groups) == row[1:12], shape.name


@pytest.mark.parametrize("row", BASELINES, ids=[r[0] for r in BASELINES])
def test_forward_gflop_matches_baselines(row):
    printed = row[-1]
    decimals = len(printed.split(".")[1])
    gflop = limits.flops(shapes.get(row[0]), "forward") / 1e9
    # Equal to the printed value up to its rounding (half a unit in the last place).
    assert abs(gflop - float(printed)) <= 0.5 * 10**-decimals + 1e-12


def test_output_extents_by_hand():
    assert (shapes.get("r50_conv1").p, shapes.get("r50_conv1").q) == (112, 112)  # (224+6-7)//2+1
    assert shapes.get("seed_pattern").p == 98
    assert shapes.get("dilated_3x3").p == 32  # 32+4-4-1+1
    assert shapes.get("r50_down_s2").q == 28  # (56-1)//2+1
    assert shapes.get("mbv2_dw_3x3").weight_size == (144, 1, 3, 3)


def test_cpu_suite_and_batches():
    cpu = shapes.select("cpu")
    assert [s.name for s in cpu] == CPU_SUITE
    for s in cpu:
        expected = 1 if s.name in ("seed_pattern", "seed_fit", "dilated_3x3") else 2
        assert s.n == expected, s.name
    # A shape left out of the CPU suite can still be named; it gets the CPU batch rule.
    assert shapes.select("cpu", ["vgg_3x3"])[0].n == 2
    assert shapes.select("cpu", ["batch1_3x3"])[0].n == 1
    assert [s.n for s in shapes.select("cuda")] == [row[1] for row in BASELINES]


def test_select_quick_and_unknown():
    assert [s.name for s in shapes.select("cpu", quick=True)] == list(shapes.QUICK)
    assert [s.name for s in shapes.select("cuda", ["grouped_3x3", "seed_fit"])] == ["seed_fit", "grouped_3x3"]
    with pytest.raises(ValueError, match="nope"):
        shapes.select("cpu", ["nope"])


# ------------------------------------------------------------ FLOPs, bytes
def test_flops_per_pass_by_hand():
    s = shapes.get("r50_res2_3x3")
    conv = 2 * 32 * 64 * 56 * 56 * 64 * 3 * 3
    bias = 32 * 64 * 56 * 56
    assert limits.flops(s, "forward") == conv == 7_398_752_256
    assert limits.flops(s, "backward_input") == conv
    assert limits.flops(s, "backward_weight") == conv
    assert limits.flops(s, "backward_bias") == bias
    assert limits.flops(s, "forward_backward") == 3 * conv + 2 * bias
    # groups divide the reduction: depthwise has one input channel per group.
    assert limits.flops(shapes.get("mbv2_dw_3x3"), "forward") == 2 * 32 * 144 * 56 * 56 * 1 * 9
    assert limits.flops(shapes.get("grouped_3x3"), "forward") == 2 * 32 * 128 * 28 * 28 * 4 * 9
    assert limits.flops(shapes.get("r50_down_s2"), "forward") == 2 * 32 * 512 * 28 * 28 * 256
    assert limits.flops(shapes.get("seed_fit", "cpu"), "forward") == 2 * 50 * 50 * 9
    with pytest.raises(ValueError, match="pass"):
        limits.flops(s, "sideways")


def test_min_bytes_by_hand():
    s = shapes.get("grouped_3x3", "cpu")  # N=2
    x, w, y, b = 2 * 128 * 28 * 28, 128 * 4 * 9, 2 * 128 * 28 * 28, 128
    assert limits.min_bytes(s, "forward", 4) == 4 * (x + w + b + y)
    assert limits.min_bytes(s, "backward_input", 2) == 2 * (y + w + x)
    assert limits.min_bytes(s, "backward_weight", 8) == 8 * (y + x + w)
    assert limits.min_bytes(s, "backward_bias", 4) == 4 * (y + b)
    assert limits.min_bytes(s, "forward_backward", 4) == 4 * ((x + w + b + y) + 2 * (x + w + y) + (y + b))


# ---------------------------------------------------------------- roofline
def test_time_at_limit_takes_the_slower_bound():
    # 1 GFLOP at 1 TFLOP/s = 1 ms; 1 GB at 1 TB/s = 1 ms.
    assert limits.time_at_limit_ms(1e9, 1e6, 1e12, 1e12) == pytest.approx(1.0)  # compute bound
    assert limits.time_at_limit_ms(1e6, 2e9, 1e12, 1e12) == pytest.approx(2.0)  # bandwidth bound
    with pytest.raises(ValueError):
        limits.time_at_limit_ms(1, 1, 0, 1)


def test_limit_pct_and_ceilings_units():
    assert limits.limit_pct(1.0, 4.0) == pytest.approx(25.0)
    assert limits.limit_pct(1.0, None) is None
    c = limits.Ceilings(rate_tflops=0.1, rate_source="test", bandwidth_gbs=20.0)  # 100 GFLOP/s, 20 GB/s
    s = shapes.get("r50_res2_3x3", "cpu")
    fl, nb = limits.flops(s, "forward"), limits.min_bytes(s, "forward", 4)
    assert c.time_at_limit_ms(fl, nb) == pytest.approx(max(fl / 1e11, nb / 2e10) * 1e3)
    # the bias gradient is bound by bytes, not FLOPs
    fl, nb = limits.flops(s, "backward_bias"), limits.min_bytes(s, "backward_bias", 4)
    assert c.time_at_limit_ms(fl, nb) == pytest.approx(nb / 2e10 * 1e3)


def test_best_ceilings_and_recomputed_limits():
    a = limits.Ceilings(0.1, "mm a", 30.0)
    b = limits.Ceilings(0.2, "mm b", 20.0)
    assert a.best(b) == limits.Ceilings(0.2, "mm b", 30.0) == b.best(a)
    rec = passes.with_ceilings(_record(flops=10**9, min_bytes=10**6, ours_ms=20.0, torch_ms=10.0), a.best(b))
    assert rec.limit_ms == pytest.approx(5.0)  # 1 GFLOP at 0.2 TFLOP/s
    assert (rec.limit_pct, rec.torch_limit_pct) == (pytest.approx(25.0), pytest.approx(50.0))
    assert (rec.rate_tflops, rec.bandwidth_gbs) == (0.2, 30.0)


def test_rate_dtypes():
    assert limits.rate_dtypes("cpu", "float32") == [(torch.float32, False)]
    assert limits.rate_dtypes("cpu", "float64") == [(torch.float64, False)]
    assert (torch.float32, False) in limits.rate_dtypes("cpu", "bfloat16")
    assert limits.rate_dtypes("cuda", "float32") == [(torch.float32, False)]
    assert limits.rate_dtypes("cuda", "tf32") == [(torch.float32, True)]
    assert limits.rate_dtypes("cuda", "bfloat16") == [(torch.bfloat16, False)]


def test_measured_ceilings_are_positive():
    c = limits.measure("cpu", "float32", quick=True)
    assert c.rate_tflops > 0 and c.bandwidth_gbs > 0 and "float32" in c.rate_source


# ------------------------------------------------------------ check, timing
def test_rel_err():
    a = torch.tensor([1.0, -2.0, 4.0])
    assert passes.rel_err(a, a.clone()) == 0
    assert passes.rel_err(a + torch.tensor([0.0, 0.0, 0.4]), a) == pytest.approx(0.1)
    assert passes.rel_err((a, a * 2), (a, a)) == pytest.approx(1.0)  # worst of a tuple
    assert passes.rel_err(a[:2], a) == math.inf
    assert math.isnan(passes.rel_err(torch.tensor([float("nan"), 1.0, 1.0]), a))


def test_compare_interleaves_and_orders_times():
    import time

    calls = []

    def fast():
        calls.append("f")

    def slow():
        calls.append("s")
        time.sleep(0.02)

    plan = timing.Budget(warmup=1, min_reps=4, max_reps=4, seconds=0)
    fast_ms, slow_ms = timing.compare([fast, slow], "cpu", plan)
    assert calls[2:] == ["f", "s", "s", "f", "f", "s", "s", "f"]
    assert slow_ms >= 20.0 > fast_ms


def test_cuda_timing_path_with_host_clock_events(monkeypatch):
    """The CUDA path's bookkeeping (warm-up, flush, events, interleaving),
    run on the host: events read time.perf_counter when recorded."""
    import time

    class Event:
        def __init__(self, enable_timing):
            assert enable_timing

        def record(self):
            self.t = time.perf_counter()

        def elapsed_time(self, end):
            return (end.t - self.t) * 1e3

    flushes = []
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(timing, "_CudaFlush", lambda device: lambda: flushes.append(1))
    calls = []
    fns = [lambda: calls.append("a"), lambda: (calls.append("b"), time.sleep(0.02))]
    a_ms, b_ms = timing.compare(fns, "cuda", timing.Budget(warmup=1, min_reps=3, max_reps=3, seconds=0))
    assert b_ms >= 20.0 > a_ms
    assert calls[4:] == ["a", "b", "b", "a", "a", "b"]  # after warm-up and one sizing call each
    assert len(flushes) == 2 + 6  # every timed call follows a flush
    assert timing.best_ms(fns[1], "cuda", timing.Budget(1, 2, 2, 0)) >= 20.0


def test_best_ms_is_the_fastest_repetition():
    import itertools
    import time

    delays = itertools.cycle([0.03, 0.001, 0.03])
    ms = timing.best_ms(lambda: time.sleep(next(delays)), "cpu", timing.Budget(1, 3, 3, 0))
    assert 1.0 <= ms < 30.0


def test_budget():
    plan = timing.budget("cpu", quick=False)
    assert plan.reps_for(10.0) == plan.min_reps and plan.reps_for(1e-9) == plan.max_reps
    assert timing.budget("cuda", quick=True, reps=7).reps_for(1.0) == 7


# ---------------------------------------------------------------------- CLI
def test_cli_defaults_and_choices():
    args = cli.parse_args([])
    assert (args.device, args.dtype, args.shapes, args.quick) == ("cpu", ["float32"], None, False)
    assert args.passes == list(limits.PASSES)
    args = cli.parse_args(["--device", "cuda", "--dtype", "tf32", "bfloat16", "tf32", "--shapes", "seed_fit",
                           "--quick", "--json", "a.json", "--markdown", "a.md", "--plot", "a.png"])
    assert args.dtype == ["tf32", "bfloat16"] and args.shapes == ["seed_fit"]
    assert (args.json, args.markdown, args.plot) == ("a.json", "a.md", "a.png")


@pytest.mark.parametrize("argv", [
    ["--dtype", "tf32"],  # no TF32 on CPU
    ["--shapes", "nope"],
    ["--dtype", "int8"],
    ["--reps", "0"],
    ["--device", "tpu"],
])
def test_cli_rejects(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(argv)
    assert exc.value.code == 2


def test_help_of_every_entry_point(capsys):
    for parse in (cli.parse_args, scaling.parse_args, e2e.parse_args):
        with pytest.raises(SystemExit) as exc:
            parse(["--help"])
        assert exc.value.code == 0
        assert "--device" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without a GPU")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(SystemExit, match="no CUDA device"):
        cli.main(["--device", "cuda", "--shapes", "seed_fit", "--no-progress"])


def test_e2e_and_scaling_args():
    args = e2e.parse_args(["--quick"])
    assert (args.batch, args.image_size) == e2e.DEFAULTS[("cpu", True)]
    assert e2e.parse_args(["--device", "cuda"]).batch == 64
    for bad in (["--dtype", "tf32"], ["--image-size", "16"], ["--batch", "0"]):
        with pytest.raises(SystemExit):
            e2e.parse_args(bad)
    with pytest.raises(SystemExit):
        scaling.parse_args(["--dtype", "tf32"])
    cpu = scaling.points("cpu", quick=False)
    assert [x for sweep, x, _ in cpu if sweep == "batch"] == [1, 2, 4, 8, 16]
    assert [x for sweep, x, _ in scaling.points("cuda", quick=False) if sweep == "batch"][-1] == 256
    assert all(s.r == 3 and s.c == s.k == scaling.CHANNELS for _, _, s in cpu)


# ------------------------------------------------------------------ records
def _record(**over):
    base = dict(
        shape="seed_fit", dims="d", device="cpu", dtype="float32", layout="contiguous",
        pass_name="forward", ours_ms=2.0, torch_ms=1.0, speedup=0.5, flops=10, min_bytes=10,
        ours_tflops=1e-9, torch_tflops=2e-9, limit_ms=0.5, limit_pct=25.0, torch_limit_pct=50.0,
        rel_err=1e-7, tolerance=1e-4, ok=True, error=None, rate_tflops=0.1, rate_source="mm",
        bandwidth_gbs=10.0, card="cpu", driver=None, torch_version="x", commit="c", date="d",
        threads=2, load_avg=0.1, command="python -m benchmarks")
    base.update(over)
    return Record(**base)


def test_record_fields_and_round_trip():
    d = _record().as_dict()
    assert set(REQUIRED) <= set(d) and d["pass"] == "forward" and "pass_name" not in d
    assert Record.from_dict(d) == _record()


def test_summary_and_markdown_of_a_failure():
    recs = [_record(), _record(shape="r50_conv1", speedup=2.0),
            _record(shape="grouped_3x3", ok=False, ours_ms=None, speedup=None, error="check failed: x")]
    gm, worst, worst_shape, timed, failed = report.summary(recs)["forward"]
    assert gm == pytest.approx(1.0) and (worst, worst_shape, timed, failed) == (0.5, "seed_fit", 2, 1)
    text = report.markdown(recs)
    assert "### cpu · float32 · contiguous" in text and "**FAIL**: check failed: x" in text


# --------------------------------------------------------- tiny real runs
@pytest.fixture
def one_thread():
    """Tiny runs on one thread: on a loaded machine a two-thread OpenMP team
    waits on descheduled workers, which costs time and tests nothing here."""
    saved = torch.get_num_threads()
    yield ["--threads", "1"]
    torch.set_num_threads(saved)


def test_harness_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["--device", "cpu", "--shapes", "seed_fit", "--quick", "--reps", "2", "--no-progress",
                   "--json", str(out / "b.json"), "--markdown", str(out / "b.md"), "--plot", str(out / "b.png")])
    assert rc == 0
    records = json.loads((out / "b.json").read_text())
    assert [r["pass"] for r in records] == list(limits.PASSES)
    for r in records:
        assert set(REQUIRED) <= set(r)
        assert r["ok"] and r["shape"] == "seed_fit" and r["device"] == "cpu"
        assert r["rel_err"] <= r["tolerance"]
        assert r["speedup"] == pytest.approx(r["torch_ms"] / r["ours_ms"])
        assert r["limit_pct"] == pytest.approx(100 * r["limit_ms"] / r["ours_ms"])
        assert r["threads"] == torch.get_num_threads()
    md = (out / "b.md").read_text()
    assert "| seed_fit | forward_backward |" in md and "geomean speedup" in md
    assert (out / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # saved runs render again (and merge) through python -m benchmarks.report
    assert report.main([str(out / "b.json"), "--markdown", str(out / "again.md")]) == 0
    assert "| seed_fit | forward_backward |" in (out / "again.md").read_text()


def test_failed_check_is_flagged_not_timed(monkeypatch):
    monkeypatch.setitem(passes.TOLERANCE, "float32", -1.0)  # no result can pass
    problem = passes.make_problem(shapes.get("seed_fit", "cpu"), "cpu", "float32")
    ceil = limits.Ceilings(0.1, "test", 10.0)
    meta = dict(card="cpu", driver=None, torch_version="x", commit="c", date="d", threads=1,
                load_avg=None, command="c")
    rec = passes.run(problem, "forward", "cpu", "float32", ceil, timing.Budget(0, 1, 1, 0), meta)
    assert not rec.ok and rec.ours_ms is None and rec.speedup is None and rec.torch_ms > 0
    assert rec.error.startswith("check failed")


def test_an_error_in_ours_is_recorded(monkeypatch):
    def broken(problem, pass_name):
        def ours():
            raise RuntimeError("no kernel for this backend")
        return ours, lambda: problem.x * 1
    monkeypatch.setattr(passes, "contenders", broken)
    problem = passes.make_problem(shapes.get("seed_fit", "cpu"), "cpu", "float32")
    meta = dict(card="cpu", driver=None, torch_version="x", commit="c", date="d", threads=1,
                load_avg=None, command="c")
    rec = passes.run(problem, "forward", "cpu", "float32", limits.Ceilings(0.1, "t", 10.0),
                     timing.Budget(0, 1, 1, 0), meta)
    assert not rec.ok and rec.error == "ours: RuntimeError: no kernel for this backend"


def test_scaling_tiny_run(tmp_path, monkeypatch, one_thread):
    monkeypatch.setitem(scaling.SWEEPS, ("cpu", True), ([1, 2], [8]))
    rc = scaling.main([*one_thread, "--quick", "--reps", "1", "--no-progress", "--json", str(tmp_path / "s.json"),
                       "--plot", str(tmp_path / "s.png")])
    assert rc == 0
    records = json.loads((tmp_path / "s.json").read_text())
    assert len(records) == 3 and all(r["ok"] and r["pass"] == "forward_backward" for r in records)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_resnet18_conv_flops_by_hand():
    conv3 = lambda c, k, hw: 2 * k * hw * hw * c * 9  # noqa: E731
    stage = lambda c_in, c, hw: conv3(c_in, c, hw) + 3 * conv3(c, c, hw) + 2 * c * hw * hw * c_in  # noqa: E731
    expected = (2 * 64 * 112 * 112 * 3 * 49 + 4 * conv3(64, 64, 56)
                + stage(64, 128, 28) + stage(128, 256, 14) + stage(256, 512, 7))
    assert models.conv_flops(models.resnet18(), 224) == expected == 3_627_122_688
    assert sum(isinstance(m, torch.nn.Conv2d) for m in models.resnet18().modules()) == 20


def test_e2e_tiny_run(tmp_path, one_thread):
    rc = e2e.main([*one_thread, "--batch", "2", "--image-size", "32", "--reps", "1", "--json", str(tmp_path / "e.json"),
                   "--markdown", str(tmp_path / "e.md")])
    assert rc == 0
    (rec,) = json.loads((tmp_path / "e.json").read_text())
    assert rec["ok"] and rec["ours_img_s"] > 0 and rec["torch_img_s"] > 0
    assert rec["speedup"] == pytest.approx(rec["torch_ms"] / rec["ours_ms"])
    assert rec["rel_err"] <= rec["tolerance"]
    assert "MyConv2d img/s" in (tmp_path / "e.md").read_text()
