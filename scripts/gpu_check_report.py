"""Readers for scripts/gpu_check.sh: each turns one stage's raw output into
the one-line detail of the summary table (and a file of the full numbers).

    python3 scripts/gpu_check_report.py ninja NINJA_LOG OUT_TXT
    python3 scripts/gpu_check_report.py junit JUNIT_XML [PYTEST_LOG]
    python3 scripts/gpu_check_report.py bench OUT_JSON OUT_MD RUN_JSON...

Each prints the detail on its first line; `junit` then lists the failed
tests, one a line. Exit status 1 where the stage failed (a failed or errored
test, no test run, a benchmark check that failed), else 0. Only the standard
library and, for `bench`, the repository's benchmarks package."""
import json
import os
import sys
import xml.etree.ElementTree as ET


def ninja(log_path, out_path):
    """Compile time per translation unit from ninja's log (v5: start ms, end
    ms, mtime, output, hash), slowest first. A later line for the same output
    (a rebuild) replaces the earlier one."""
    units = {}
    with open(log_path) as f:
        for line in f:
            if line.startswith("#"):
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 4:
                continue
            start, end, output = int(parts[0]), int(parts[1]), parts[3]
            units[output] = (start, end)
    if not units:
        print("ninja log is empty")
        return 1
    rows = sorted(((end - start) / 1000, start / 1000, end / 1000, out) for out, (start, end) in units.items())
    rows.reverse()
    wall = max(end for _, _, end, _ in rows) - min(start for _, start, _, _ in rows)
    total = sum(r[0] for r in rows)
    with open(out_path, "w") as f:
        f.write(f"# compile time per translation unit (ninja log), slowest first\n"
                f"# {len(rows)} units, sum {total:.1f} s, wall {wall:.1f} s\n")
        f.write("seconds\tstart_s\tend_s\toutput\n")
        for secs, start, end, out in rows:
            f.write(f"{secs:.1f}\t{start:.1f}\t{end:.1f}\t{short(out)}\n")
    slowest = rows[0]
    print(f"{len(rows)} units in {wall:.0f} s (sum {total:.0f} s); slowest {short(slowest[3])} {slowest[0]:.0f} s")
    return 0


def short(path):
    """An object file's path from csrc/ on (the build folder is noise)."""
    i = path.find("csrc/")
    return path[i:] if i >= 0 else os.path.basename(path)


OUTCOMES = {"PASSED": "passed", "FAILED": "failed", "ERROR": "errors", "SKIPPED": "skipped"}


def junit(xml_path, log_path=None):
    """Counts and failed tests from pytest's JUnit XML; where a run was
    killed before pytest wrote it, from the `pytest -v` log, which names each
    test as it ends."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as exc:
        if log_path is None or not os.path.exists(log_path):
            print(f"no test report ({type(exc).__name__})")
            return 1
        return from_log(log_path)
    counts = dict(passed=0, failed=0, errors=0, skipped=0)
    failed = []
    for case in root.iter("testcase"):
        node = case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "")
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "errors"
                message = (child.get("message") or child.text or "").strip().splitlines()
                failed.append(f"{child.tag.upper()} {node}: {message[0][:200] if message else ''}")
                break
            if child.tag == "skipped":
                outcome = "skipped"
        counts[outcome] += 1
    ran = counts["passed"] + counts["failed"] + counts["errors"]
    print(", ".join(f"{v} {k}" for k, v in counts.items() if v or k in ("passed", "failed")))
    for line in failed:
        print(line)
    return 1 if failed or ran == 0 else 0


def from_log(log_path):
    """Counts from `pytest -v` lines ("path::test PASSED" or, under
    pytest-xdist, "[gw0] [ 5%] PASSED path::test")."""
    counts = dict(passed=0, failed=0, errors=0, skipped=0)
    failed = []
    with open(log_path, errors="replace") as f:
        for line in f:
            words = line.split()
            node = next((w for w in words if "::" in w), None)
            outcome = next((OUTCOMES[w] for w in words if w in OUTCOMES), None)
            if node is None or outcome is None or line.startswith(("FAILED ", "ERROR ")):
                continue  # the short summary at the end repeats the failures
            counts[outcome] += 1
            if outcome in ("failed", "errors"):
                failed.append(f"{'FAILURE' if outcome == 'failed' else 'ERROR'} {node}")
    ran = counts["passed"] + counts["failed"] + counts["errors"]
    print("no JUnit report; from the log: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v or k in (
        "passed", "failed")))
    for line in failed:
        print(line)
    return 1 if failed or ran == 0 else 0


def bench(out_json, out_md, run_paths):
    """Merges the runs' JSON into one file and one Markdown report; the
    detail gives each dtype's geomean speedup (torch time / ours) for the
    forward and forward+backward passes."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import report

    records = []
    for path in run_paths:
        if os.path.exists(path):
            records += report.read_json(path)
    if not records:
        print("no benchmark run finished")
        return 1
    report.write_json(records, out_json)
    report.write_markdown(records, out_md)
    parts = []
    for (device, dtype, layout), group in report.groups(records).items():
        rows = report.summary(group)
        heads = [f"{name} {report.fmt(rows[p][0])}x" for p, name in (("forward", "fwd"), ("forward_backward", "fwd+bwd"))
                 if p in rows and rows[p][0] is not None]
        parts.append(f"{dtype}: " + (", ".join(heads) if heads else "nothing timed"))
    failed = sum(not r.ok for r in records)
    print("; ".join(parts) + f"; {len(records)} records, {failed} failed checks")
    return 1 if failed else 0


def main(argv):
    if len(argv) >= 3 and argv[0] == "ninja":
        return ninja(argv[1], argv[2])
    if len(argv) in (2, 3) and argv[0] == "junit":
        return junit(*argv[1:])
    if len(argv) >= 3 and argv[0] == "bench":
        return bench(argv[1], argv[2], argv[3:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
