"""make gpu-check (scripts/gpu_check.sh) without a GPU: a dry run whose every
GPU stage reports "skipped: no CUDA device", that builds nothing and exits 0;
the readers of scripts/gpu_check_report.py that turn the GPU stages' output
into the summary; and the per-test time limit of conftest.py that the GPU
check sets."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import gpu_check_report  # noqa: E402

GPU_STAGES = ["build", "tests", "sanitizer memcheck", "sanitizer synccheck", "sanitizer racecheck", "benchmark"]


def summary_rows(text):
    """{stage: (status, seconds, detail)} from the summary's Markdown table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("stage", "---"):
            rows[cells[0]] = tuple(cells[1:])
    return rows


def test_dry_run_without_a_gpu(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="")
    run = subprocess.run(["bash", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = (out / "summary.md").read_text()
    rows = summary_rows(summary)
    assert list(rows) == ["machine", *GPU_STAGES], summary
    assert rows["machine"][0] == "ok" and rows["machine"][2].startswith("no CUDA device"), rows["machine"]
    for stage in GPU_STAGES:
        assert rows[stage][0] == "skipped: no CUDA device", (stage, rows[stage])
    # The table is printed last, and nothing was built or run: no compile
    # times, test report or benchmark results.
    assert run.stdout.rstrip().endswith(summary.rstrip())
    assert sorted(os.listdir(out)) == ["gpu-check.log", "logs.tar.gz", "summary.md"]


def test_a_gpu_torch_cannot_use_fails_instead_of_a_dry_run(tmp_path):
    """nvidia-smi lists a GPU, torch sees none (here: hidden from it by an
    invalid CUDA_VISIBLE_DEVICES): stage 1 fails, the GPU stages say why."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n")
    (fake / "nvidia-smi").chmod(0o755)
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="-1",
               PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run(["bash", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    rows = summary_rows((out / "summary.md").read_text())
    assert rows["machine"][0] == "FAILED"
    assert rows["machine"][2].startswith("nvidia-smi lists a GPU that torch cannot use")
    assert rows["build"][0] == "skipped: nvidia-smi lists a GPU that torch cannot use"


def test_ninja_log_gives_time_per_unit(tmp_path, capsys):
    log = tmp_path / "ninja_log"
    log.write_text("# ninja log v5\n"
                   "0\t1500\t1\t/b/temp/csrc/cpu/a.o\th1\n"
                   "0\t90000\t1\t/b/temp/csrc/cuda/forward_kernels.o\th2\n"
                   "1500\t4000\t1\t/b/temp/csrc/cpu/a.o\th3\n"      # a rebuild replaces the first line
                   "90000\t95000\t1\t/b/lib/_C.so\th4\n")
    assert gpu_check_report.ninja(str(log), str(tmp_path / "times.txt")) == 0
    detail = capsys.readouterr().out.strip()
    assert detail == "3 units in 95 s (sum 98 s); slowest csrc/cuda/forward_kernels.o 90 s"
    lines = (tmp_path / "times.txt").read_text().splitlines()
    assert lines[3].split("\t") == ["90.0", "0.0", "90.0", "csrc/cuda/forward_kernels.o"]
    assert lines[4].split("\t")[0] == "5.0" and lines[5].split("\t")[0] == "2.5"


def test_junit_counts_and_lists_failures(tmp_path, capsys):
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_cuda" name="test_a[shape0]" time="0.1"/>'
        '<testcase classname="tests.test_cuda" name="test_b" time="0.1">'
        '<failure message="AssertionError: grad_input differs">trace</failure></testcase>'
        '<testcase classname="tests.test_ops" name="test_c[cuda]" time="0.1">'
        '<skipped message="needs 48 GiB"/></testcase>'
        '<testcase classname="tests.test_ops" name="test_d" time="0.1"><error message="fixture"/></testcase>'
        '</testsuite></testsuites>')
    assert gpu_check_report.junit(str(xml)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "1 passed, 1 failed, 1 errors, 1 skipped"
    assert lines[1] == "FAILURE tests/test_cuda.py::test_b: AssertionError: grad_input differs"
    assert lines[2] == "ERROR tests/test_ops.py::test_d: fixture"


def test_junit_without_a_report_or_a_test_run_fails(tmp_path, capsys):
    assert gpu_check_report.junit(str(tmp_path / "missing.xml")) == 1
    xml = tmp_path / "skipped.xml"
    xml.write_text('<testsuites><testsuite><testcase classname="t" name="x"><skipped/></testcase>'
                   '</testsuite></testsuites>')
    assert gpu_check_report.junit(str(xml)) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "0 passed, 0 failed, 1 skipped"


def _record(dtype, pass_name, speedup, ok=True):
    torch_ms = 2.0
    return {
        "shape": "r50_res2_3x3", "dims": "N32", "device": "cuda", "dtype": dtype, "layout": "NCHW",
        "pass": pass_name, "ours_ms": torch_ms / speedup if ok else None, "torch_ms": torch_ms,
        "speedup": speedup if ok else None, "flops": 10**9, "min_bytes": 10**6, "ours_tflops": 1.0,
        "torch_tflops": 1.0, "limit_ms": 0.1, "limit_pct": 10.0, "torch_limit_pct": 10.0,
        "rel_err": 1e-6, "tolerance": 1e-4, "ok": ok, "error": None if ok else "check failed",
        "rate_tflops": 50.0, "rate_source": "torch.mm", "bandwidth_gbs": 4000.0, "card": "NVIDIA H200",
        "driver": "580", "torch_version": "2.11.0", "commit": "abc1234", "date": "2026-12-01",
        "threads": 16, "load_avg": 0.1, "command": "python -m benchmarks --device cuda",
    }


def test_bench_merges_runs_and_reports_geomeans(tmp_path, capsys):
    runs = []
    for dtype, speedups in (("float32", (0.5, 2.0)), ("bfloat16", (1.5, 1.5))):
        path = tmp_path / f"{dtype}.json"
        path.write_text(json.dumps([_record(dtype, "forward", speedups[0]),
                                    _record(dtype, "forward", speedups[1]),
                                    _record(dtype, "forward_backward", 0.8)]))
        runs.append(str(path))
    runs.append(str(tmp_path / "timed-out.json"))  # a run that wrote nothing
    out_json, out_md = tmp_path / "all.json", tmp_path / "all.md"
    assert gpu_check_report.bench(str(out_json), str(out_md), runs) == 0
    assert capsys.readouterr().out.strip() == (
        "float32: fwd 1x, fwd+bwd 0.8x; bfloat16: fwd 1.5x, fwd+bwd 0.8x; 6 records, 0 failed checks")
    assert len(json.loads(out_json.read_text())) == 6
    assert "### cuda · bfloat16 · NCHW" in out_md.read_text()

    failing = tmp_path / "failing.json"
    failing.write_text(json.dumps([_record("tf32", "forward", 1.0, ok=False)]))
    assert gpu_check_report.bench(str(out_json), str(out_md), [str(failing)]) == 1
    assert capsys.readouterr().out.strip().endswith("1 records, 1 failed checks")


def test_time_limit_fails_a_slow_test_without_shrinking(tmp_path):
    """CONV_EXT_TEST_TIMEOUT fails a test that runs too long, plain or under
    hypothesis (which must not take the limit for a bug and rerun it), and
    leaves quick tests alone."""
    (tmp_path / "conftest.py").write_text(open(os.path.join(ROOT, "tests", "conftest.py")).read())
    (tmp_path / "test_slow.py").write_text(
        "import time\n"
        "from hypothesis import given, settings, strategies as st\n"
        "def test_quick():\n    time.sleep(0.1)\n"
        "def test_slow():\n    time.sleep(60)\n"
        "@settings(deadline=None, max_examples=1000, database=None)\n"
        "@given(st.integers(0, 10))\n"
        "def test_slow_hypothesis(n):\n    time.sleep(0.3)\n")
    env = dict(os.environ, CONV_EXT_TEST_TIMEOUT="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                          str(tmp_path), str(tmp_path / "test_slow.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed" in run.stdout and "2 failed" in run.stdout, run.stdout
    assert "test_slow ran past CONV_EXT_TEST_TIMEOUT=1 s" in run.stdout
    assert "test_slow_hypothesis ran past CONV_EXT_TEST_TIMEOUT=1 s" in run.stdout
