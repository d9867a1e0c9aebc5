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
# The layers of real networks the suite adds (issue 14), in order.
NETWORK = ["dw3_s1_c384_7x7", "dw3_s1_c576_7x7", "dw3_s1_c960_4x4", "dw3_s1_c192_14x14",
           "dw3_s2_c96_56x56", "dw3_s2_c144_28x28", "dw5_s1_c240_14x14", "dw5_s1_c1152_4x4",
           "dw5_s2_c144_28x28", "dw7_s1_c96_28x28", "dw7_s1_c384_7x7", "g16_s1_c400_4x4",
           "g16_s1_c160_7x7", "g16_s2_c400_7x7", "g16_s2_c160_14x14", "pw_c400_k400_4x4",
           "pw_c160_k960_4x4", "pw_c960_k160_4x4", "pw_c116_k116_7x7", "dense3_s1_c512_k512_4x4",
           "dense3_s2_c256_k512_7x7", "se_c1152_k48_1x1", "se_c48_k1152_1x1"]


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
    assert [s.name for s in cpu] == CPU_SUITE + NETWORK
    for s in cpu:
        expected = 1 if s.name in ("seed_pattern", "seed_fit", "dilated_3x3") else 2
        assert s.n == (8 if s.name in NETWORK else expected), s.name
    # A shape left out of the CPU suite can still be named; it gets the CPU batch rule.
    assert shapes.select("cpu", ["vgg_3x3"])[0].n == 2
    assert shapes.select("cpu", ["batch1_3x3"])[0].n == 1
    assert [s.n for s in shapes.select("cuda")] == [row[1] for row in BASELINES] + [8] * len(NETWORK)
    assert [s.name for s in shapes.select("cuda")] == [row[0] for row in BASELINES] + NETWORK


def test_network_layer_kinds():
    """Every kind issue 14 lists is there, with the numbers in its name."""
    by_name = {s.name: s for s in shapes.NETWORK}
    assert list(by_name) == NETWORK and not set(NETWORK) & {row[0] for row in BASELINES}
    for s in shapes.NETWORK:
        kind, *rest = s.name.split("_")
        plane = rest[-1].split("x")
        assert (s.h, s.w) == (int(plane[0]), int(plane[1])), s.name
        if kind.startswith("dw"):  # depthwise k x k: one channel per group
            assert s.groups == s.c == s.k and s.r == s.s == int(kind[2:]) and s.pad == s.r // 2, s.name
            assert s.stride == int(rest[0][1:]) and s.c == int(rest[1][1:]), s.name
        elif kind == "g16":  # RegNet's group width
            assert s.cg == 16 and s.k == s.c and s.r == 3 and s.stride == int(rest[0][1:]), s.name
        elif kind == "dense3":  # ResNet's small planes and strided 3x3
            assert s.groups == 1 and s.r == s.s == 3 and s.stride == int(rest[0][1:]), s.name
            assert (s.c, s.k) == (int(rest[1][1:]), int(rest[2][1:])), s.name
        else:  # 1x1: pointwise on small planes, squeeze-excite on 1x1 planes
            assert kind in ("pw", "se") and s.r == s.s == 1 and s.groups == 1, s.name
            assert (s.c, s.k) == (int(rest[0][1:]), int(rest[1][1:])), s.name
            assert (s.h == 1) == (kind == "se"), s.name
    strides = {(s.name[:3], s.stride) for s in shapes.NETWORK}
    assert {("dw3", 1), ("dw3", 2), ("dw5", 1), ("dw5", 2), ("dw7", 1), ("g16", 1), ("g16", 2),
            ("den", 1), ("den", 2)} <= strides
    assert all(shapes.family(n) == "network" for n in NETWORK)
    assert all(shapes.family(row[0]) == "suite" for row in BASELINES)


def test_network_layers_are_what_the_models_feed():
    """Each network layer (but ConvNeXt's 7x7, a model not written here) is
    a convolution one of the e2e models runs at batch 8 and 112x112."""
    fed = set()
    for name in models.MODELS:
        for _, (n, c, h, w), _, m in models.conv_layers(models.build(name), 112, batch=8):
            fed.add((n, c, h, w, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0], m.groups))
    for s in shapes.NETWORK:
        if s.name.startswith("dw7"):
            continue
        assert (s.n, s.c, s.h, s.w, s.k, s.r, s.stride, s.pad, s.groups) in fed, s.name


def test_select_quick_and_unknown():
    assert [s.name for s in shapes.select("cpu", quick=True)] == list(shapes.QUICK)
    assert {"dw3_s1_c384_7x7", "g16_s2_c400_7x7"} <= set(shapes.QUICK)
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
    from benchmarks import layers

    for parse in (cli.parse_args, scaling.parse_args, e2e.parse_args, layers.parse_args):
        with pytest.raises(SystemExit) as exc:
            parse(["--help"])
        assert exc.value.code == 0
        expected = "--models" if parse is layers.parse_args else "--device"  # layers runs on the CPU only
        assert expected in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without a GPU")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(SystemExit, match="no CUDA device"):
        cli.main(["--device", "cuda", "--shapes", "seed_fit", "--no-progress"])


def test_e2e_and_scaling_args():
    args = e2e.parse_args(["--quick"])
    assert (args.batch, args.image_size, args.rounds) == (*e2e.DEFAULTS[("cpu", True)], 1)
    args = e2e.parse_args([])
    assert (args.batch, args.image_size, args.rounds) == (8, 112, 3)  # issue 14's setting
    assert args.models == list(models.MODELS)
    assert e2e.parse_args(["--device", "cuda"]).batch == 64
    assert e2e.parse_args(["--models", "regnetx_400mf", "resnet18", "resnet18"]).models == \
        ["regnetx_400mf", "resnet18"]
    for bad in (["--dtype", "tf32"], ["--image-size", "16"], ["--batch", "0"], ["--batch", "1"],
                ["--rounds", "0"], ["--models", "vgg16"]):
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


# ------------------------------------------------------------------ models
# torchvision's published parameter counts of the same architectures
# (resnet18, mobilenet_v2, efficientnet_b0, regnet_x_400mf,
# shufflenet_v2_x1_0) and their numbers of nn.Conv2d layers: written after the
# same papers, the models must agree layer for layer.
PUBLISHED = {
    "resnet18": (11_689_512, 20),
    "mobilenet_v2": (3_504_872, 52),
    "efficientnet_b0": (5_288_548, 81),
    "regnetx_400mf": (5_495_976, 71),
    "shufflenet_v2": (2_278_604, 56),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_models_match_published_sizes(name):
    model = models.build(name)
    params, convs = PUBLISHED[name]
    assert sum(p.numel() for p in model.parameters()) == params
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == convs
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 1000)


def _kinds(name, size=112):
    """{(kernel, stride, channels per group, depthwise)} of a model's layers
    and the smallest plane each kind sees."""
    out = {}
    for _, (_, c, h, _), _, m in models.conv_layers(models.build(name), size):
        key = (m.kernel_size[0], m.stride[0], c // m.groups, m.groups == c and c > 1)
        out[key] = min(out.get(key, h), h)
    return out


def test_models_have_their_layer_kinds():
    dw = lambda k, s: (k, s, 1, True)  # noqa: E731
    mbv2, effnet = _kinds("mobilenet_v2"), _kinds("efficientnet_b0")
    regnet, shuffle = _kinds("regnetx_400mf"), _kinds("shufflenet_v2")
    assert mbv2[dw(3, 1)] == 4 and dw(3, 2) in mbv2  # depthwise down to 4x4 planes
    assert {dw(5, 1), dw(5, 2), dw(3, 1), dw(3, 2)} <= set(effnet)
    assert not any(g for (k, s, cg, g) in _kinds("resnet18"))
    assert {(3, 1, 16, False), (3, 2, 16, False)} <= set(regnet)  # group width 16, both strides
    assert all(cg == 16 for (k, s, cg, g) in regnet if k == 3 and (s, cg) != (2, 3))  # but the stem
    assert dw(3, 2) in shuffle and dw(3, 1) in shuffle
    # squeeze-excite: 1x1 convolutions on 1x1 planes, with bias
    se = [m for n, shape, _, m in models.conv_layers(models.build("efficientnet_b0"), 112) if shape[2:] == (1, 1)]
    assert len(se) == 32 and all(m.bias is not None and m.kernel_size == (1, 1) for m in se)


def test_channel_shuffle_interleaves_halves():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert models.channel_shuffle(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_model_names():
    assert list(models.MODELS) == list(PUBLISHED)
    with pytest.raises(ValueError, match="vgg"):
        models.build("vgg")


# --------------------------------------------------------------- e2e check
def test_e2e_check_names_a_wrong_gradient():
    """A model whose one convolution computes something slightly else fails
    the check by far, naming the tensor furthest off."""
    import copy

    import conv_ext

    torch.manual_seed(0)
    theirs = models.build("shufflenet_v2")
    ours = conv_ext.replace_conv2d(copy.deepcopy(theirs))
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    ours_err, torch_err, tol, err64, failed = e2e.check(theirs, ours, images, labels, e2e.FLOOR["float32"])
    assert failed is None and ours_err <= tol and 0 < torch_err < 1e-4 and err64 < 1e-12
    with torch.no_grad():
        ours.features[2].branch2[2][0].weight.mul_(1 + 1e-3)  # the last 1x1 of the first unit, 0.1 % off
    ours_err, _, tol, err64, failed = e2e.check(theirs, ours, images, labels, e2e.FLOOR["float32"])
    assert ours_err > 10 * tol and err64 > 1e-6 and failed is not None
    name = failed.split(":")[0]
    assert name == "loss" or name in dict(ours.named_parameters())


def test_smooth_replaces_only_the_kinks():
    model = e2e.smooth(models.build("resnet18"))
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.ReLU not in kinds and torch.nn.MaxPool2d not in kinds
    assert torch.nn.SiLU in kinds and torch.nn.AvgPool2d in kinds
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 20
    assert not any(isinstance(m, torch.nn.ReLU6) for m in e2e.smooth(models.build("mobilenet_v2")).modules())


def test_overhead_measures_both_cases():
    from benchmarks import overhead

    recs = overhead.measure("cpu", torch.float32, quick=True, rounds=1, tolerance=1e-5)
    assert [r.case for r in recs] == list(overhead.CASES)
    for r in recs:
        assert r.ok and r.rel_err <= 1e-5 and r.ours_us > 0 and r.torch_us > 0
        assert r.ratio == pytest.approx(r.ours_us / r.torch_us) == pytest.approx(1 / r.speedup)
    # forward+backward does more than forward alone
    assert recs[1].torch_us > recs[0].torch_us


def test_isa_names(monkeypatch):
    from benchmarks import machine

    avx512 = {"avx2", "fma", "avx512f"}
    assert machine.conv_ext_isa(avx512, "") == "avx512"
    assert machine.conv_ext_isa(avx512, "avx2") == "avx2"
    assert machine.conv_ext_isa(avx512, "scalar") == "scalar"
    assert machine.conv_ext_isa({"avx2"}, "") == "scalar"  # AVX2 without FMA: the portable kernels
    bf16 = avx512 | {"avx512bw", "avx512vl", "avx512_bf16"}
    assert machine.conv_ext_isa(bf16, "") == "avx512_bf16"
    assert machine.conv_ext_isa(bf16, "avx512") == "avx512"
    assert machine.conv_ext_isa(bf16, "avx2") == "avx2"
    monkeypatch.setenv("CONV_EXT_CPU_ISA", "avx2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert "(CONV_EXT_CPU_ISA=avx2)" in machine.isa() and machine.isa().startswith("conv_ext ")
    cmd = machine.command("p", ["--x"]).split()
    assert {"CONV_EXT_CPU_ISA=avx2", "ONEDNN_MAX_CPU_ISA=AVX2"} <= set(cmd) and cmd[-2:] == ["p", "--x"]


def test_e2e_quick_run(tmp_path, one_thread):
    """The CI command, on one thread: every model checked and timed, the
    overhead line, JSON, Markdown and plot written, and rendered again from
    the JSON."""
    out = tmp_path / "e2e"
    rc = e2e.main([*one_thread, "--quick", "--reps", "1", "--no-progress", "--json", str(out / "e.json"),
                   "--markdown", str(out / "e.md"), "--plot", str(out / "e.png")])
    assert rc == 0
    results = json.loads((out / "e.json").read_text())
    assert [r["model"] for r in results["models"]] == list(models.MODELS)
    for rec in results["models"]:
        assert rec["ok"] and rec["ours_img_s"] > 0 and rec["torch_img_s"] > 0 and rec["rounds"] == 1
        assert rec["speedup"] == pytest.approx(rec["torch_ms"] / rec["ours_ms"])
        assert rec["speedup_min"] == pytest.approx(rec["speedup"]) == pytest.approx(rec["speedup_max"])
        assert rec["rel_err"] <= rec["tolerance"]
        assert (rec["params"], rec["convs"]) == PUBLISHED[rec["model"]]
        assert (rec["batch"], rec["image_size"]) == (2, 32)
    assert results["geomean_speedup"] == pytest.approx(report.geomean([r["speedup"] for r in results["models"]]))
    assert [o["case"] for o in results["overhead"]] == ["forward_no_grad", "forward_backward"]
    setup = results["setup"]
    assert setup["isa"].startswith("conv_ext ") and setup["threads"] == 1 and "--quick" in setup["command"]
    md = (out / "e.md").read_text()
    assert "MyConv2d img/s" in md and "| RegNetX-400MF | 71 |" in md and "**geomean**" in md
    assert "| forward_backward |" in md and "ours / torch" in md
    assert (out / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert e2e.main(["--from-json", str(out / "e.json"), "--markdown", str(out / "again.md")]) == 0
    assert (out / "again.md").read_text() == md
    (out / "old.json").write_text("[{}]")
    with pytest.raises(SystemExit, match="earlier versions"):
        e2e.main(["--from-json", str(out / "old.json")])


def test_e2e_autocast_quick_run(tmp_path, one_thread):
    """--autocast: float32 models whose forward runs under
    torch.autocast(bfloat16), checked against float64 within twice torch's
    own autocast error, timed, and written as JSON, Markdown and plot."""
    out = tmp_path / "ac"
    rc = e2e.main([*one_thread, "--quick", "--autocast", "--reps", "1", "--no-progress",
                   "--json", str(out / "a.json"), "--markdown", str(out / "a.md"), "--plot", str(out / "a.png")])
    assert rc == 0
    results = json.loads((out / "a.json").read_text())
    assert [r["model"] for r in results["models"]] == list(models.MODELS)
    for rec in results["models"]:
        assert rec["ok"] and rec["autocast"] == "bfloat16" and rec["dtype"] == "float32"
        assert rec["speedup"] == pytest.approx(rec["torch_ms"] / rec["ours_ms"])
        # bfloat16 convolutions: torch's own error is far above float32's
        assert 1e-4 < rec["torch_rel_err"] and rec["rel_err"] <= rec["tolerance"]
        assert rec["tolerance"] == pytest.approx(max(2 * rec["torch_rel_err"], e2e.FLOOR["bfloat16"]))
    assert results["overhead"] == []  # measured by the float32 run
    assert "--autocast" in results["setup"]["command"]
    md = (out / "a.md").read_text()
    assert "float32 under autocast(bfloat16)" in md and "**geomean**" in md
    assert (out / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):
        e2e.parse_args(["--autocast", "--dtype", "float16"])


def test_e2e_autocast_step_runs_convolutions_in_bfloat16():
    """The timed step under --autocast: every MyConv2d returns bfloat16 (the
    op casts its float32 operands), the parameters and their gradients stay
    float32; without autocast the same step is float32 throughout."""
    import copy

    import conv_ext

    torch.manual_seed(0)
    model = conv_ext.replace_conv2d(copy.deepcopy(models.build("shufflenet_v2")))
    seen = []
    for m in model.modules():
        if isinstance(m, conv_ext.MyConv2d):
            m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    e2e._step(model, opt, images, labels, "bfloat16")
    assert len(seen) == 56 and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    seen.clear()
    e2e._step(model, opt, images, labels)
    assert set(seen) == {torch.float32}


def test_e2e_failed_check_is_flagged_not_timed(tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr(e2e, "check", lambda *a: (1e-6, 1e-6, -1.0, 0.0, "stem.0.weight: 1e-06 > -1"))
    rc = e2e.main([*one_thread, "--quick", "--reps", "1", "--no-progress", "--no-overhead", "--models",
                   "resnet18", "--json", str(tmp_path / "f.json")])
    assert rc == 1
    (rec,) = json.loads((tmp_path / "f.json").read_text())["models"]
    assert not rec["ok"] and rec["ours_ms"] is None and rec["speedup"] is None and rec["torch_ms"] > 0
    assert rec["error"].startswith("check failed: stem.0.weight")


# ------------------------------------------------------------------ layers
def test_layer_kinds_and_distinct_layers():
    from benchmarks import layers

    assert [layers.kind(shapes.get(n)) for n in ("dw3_s2_c96_56x56", "g16_s1_c400_4x4", "pw_c400_k400_4x4",
                                                 "r50_res2_3x3", "dw7_s1_c384_7x7")] == \
        ["dw3x3 s2", "g16 3x3 s1", "1x1 s1", "3x3 s1", "dw7x7 s1"]
    for name, (_, convs) in PUBLISHED.items():
        found = layers.distinct_layers(name, 8, 112)
        assert sum(calls for _, calls in found) == convs  # every convolution counted once
        assert len({s.describe() for s, _ in found}) == len(found)  # and each shape listed once
    resnet = {s.describe(): calls for s, calls in layers.distinct_layers("resnet18", 8, 112)}
    assert resnet["N8 C64 28x28 K64 3x3 s1 p1 d1 g1"] == 4  # stage 1: two blocks of two 3x3 layers


def test_layers_tiny_run(tmp_path, one_thread):
    from benchmarks import layers

    rc = layers.main([*one_thread, "--models", "shufflenet_v2", "--batch", "2", "--image-size", "32", "--reps", "1",
                      "--no-progress", "--top", "3", "--json", str(tmp_path / "l.json"),
                      "--markdown", str(tmp_path / "l.md")])
    assert rc == 0
    recs = json.loads((tmp_path / "l.json").read_text())["layers"]
    assert sum(r["calls"] for r in recs) == 56 and all(r["ok"] and r["ours_ms"] > 0 for r in recs)
    md = (tmp_path / "l.md").read_text()
    assert "#### shufflenet_v2: convolutions" in md and "| dw3x3 s2 |" in md and "time lost per step" in md
