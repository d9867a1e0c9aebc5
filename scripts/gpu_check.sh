#!/usr/bin/env bash
# make gpu-check: the whole GPU proof of csrc/cuda/ in one run of under 9
# minutes on one H100/H200 machine (16 cores, python3 with a CUDA build of
# torch, nvcc, no package registry):
#
#   1. machine    card, driver, torch and CUDA versions, nvcc, ninja, and
#                 whether compute-sanitizer can use the device (a probe run)
#   2. build      pip install --no-build-isolation --no-deps -e . offline,
#                 TORCH_CUDA_ARCH_LIST=9.0, MAX_JOBS=$(nproc), FORCE_CUDA=1;
#                 ninja's log gives the compile time of every translation
#                 unit (build-times.txt), then every op must have a CUDA kernel
#   3. tests      pytest -m "cuda and not fuzz": tests/test_cuda.py (gradcheck,
#                 gradgradcheck, the 4-dtype sweep against F.conv2d, CPU vs
#                 CUDA, opcheck, torch.compile also with reduce-overhead,
#                 channels_last, batch 0, >2^31 elements, determinism) and the
#                 cuda cases of every device-parametrized test (conftest marks
#                 them `cuda`); "not fuzz" because a command-line -m replaces
#                 the default "-m 'not fuzz'" of pyproject.toml. Failures are
#                 listed, not stopped at; each test has a time limit
#                 (CONV_EXT_TEST_TIMEOUT, tests/conftest.py); JUnit XML.
#   4. sanitizer  compute-sanitizer memcheck, synccheck and racecheck on
#                 tests/sanitizer_subset.py, run beside stage 3 (both only
#                 check results; neither is timed). "not available on this
#                 machine" where the tool refuses the device, which is not a
#                 pass.
#   5. benchmark  python -m benchmarks --device cuda for float32, tf32 and
#                 bfloat16 on the public suite: first forward and
#                 forward_backward for each dtype, then the three single
#                 backward passes while time is left. One JSON, one Markdown.
#
#   make gpu-check                       # or: bash scripts/gpu_check.sh
#   OUT=results make gpu-check           # OUT: the folder to write results to
#                                        # (default ./gpu-check-output)
#
# Without a CUDA device (torch.cuda.is_available() False, e.g. CPU CI or
# CUDA_VISIBLE_DEVICES=) it is a dry run: stage 1 reports the machine, every
# GPU stage reports "skipped: no CUDA device", nothing is built, exit 0. But
# a GPU that nvidia-smi lists and torch cannot use fails stage 1.
# Exit status 1 where a stage FAILED; "not available" alone does not fail.
#
# OUT receives at most 7 files, no folders: summary.md (the table printed
# last), gpu-check.log (this script's own log), build-times.txt,
# junit-cuda.xml, bench-cuda.json, bench-cuda.md, and logs.tar.gz holding
# every stage's full output.
#
# Time boxes (seconds of wall time; each stage runs under `timeout`, SIGINT
# first so that pytest still writes its report, SIGKILL 10 s later). Each box
# is also cut to what is left of GPU_CHECK_BUDGET=540 s after the minimum
# the later stages need, so the run ends inside 9 minutes and one 10-minute
# command holds it. How each was sized (nothing here has run on a GPU yet,
# so the test and sanitizer figures are estimates by kind, not readings):
#   machine     ~25  versions, one python3 start, and the compute-sanitizer
#                    probe (python3 under the tool, one small kernel).
#   build      200   measured on a 2-core machine shared with other builds
#                    (load 12-20, so wall times there are 4-8x CPU times):
#                    the CUDA build of this tree, 34 units (29 .cpp, 5 .cu),
#                    MAX_JOBS=2, took 327 s of CPU time (user+sys) in all.
#                    Slowest units, each compiled alone, CPU time:
#                    cpu/direct_rows_vec.cpp 27 s,
#                    cuda/backward_weight_kernels.cu 24 s,
#                    cpu/conv2d_forward.cpp 23 s,
#                    cuda/backward_bias_kernels.cu 22 s,
#                    cuda/forward_kernels.cu 19 s. With 16 jobs the compile
#                    wall lies between max(27, 327/16 = 20) = 27 s and
#                    27 + 20 = 47 s (list scheduling); with pip, setup.py's
#                    torch import and the link, ~60 s. 200 s leaves room for
#                    cores 1.5x slower and twice the CUDA code (tensor-core
#                    kernels are being added).
#   tests      180   221 tests selected (pytest --collect-only). By kind:
#                    ~180 small-shape tests, <0.3 s each (~50 s); 5
#                    torch.compile runs, ~25 s each for Inductor's first
#                    compile (~125 s); test_fuzz_cuda, 5,000 hypothesis
#                    examples at ~5-10 ms of host work each (~25-50 s; its CPU
#                    twin took 30 ms of CPU per example here, mostly the
#                    float64 convolutions a GPU takes over); 7 tests that run
#                    child processes, 5-10 s each (~50 s); ~20 gradcheck /
#                    gradgradcheck runs, ~3 s each (~60 s); 3 tests past 2^31
#                    elements, ~5 s each. ~350-400 s in one process; with
#                    pytest-xdist (on the GPU machine's image) 4 workers,
#                    ~100-130 s plus ~15 s to start them. Per test 150 s
#                    (test_fuzz_cuda is the longest).
#   sanitizer  (the tests' 180 s) memcheck, synccheck and racecheck side by
#                    side, each for the whole window: 20 convolutions x 4
#                    passes reaching every kernel variant. racecheck and
#                    synccheck instrument only conv_ext's kernels
#                    (--kernel-name kns=conv_ext): racecheck slows every
#                    shared-memory access of an instrumented kernel, and
#                    cuDNN's reference kernels are not ours.
#   benchmark  the rest: 540 - 25 - 60 - 180 - 20 = ~255 s with the build
#                    as expected, 115 s at its full box. Per dtype, forward
#                    and forward_backward on the 15 shapes are 30 verified
#                    pairs timed for 0.3 s of GPU time each (<= 0.8 s with
#                    checks and L2 flushes), the limits measured twice and
#                    python3's start: ~30-35 s; the three single backward
#                    passes add 45 pairs, ~45 s. All of it, ~240 s, fits when
#                    the build is quick; otherwise the single backward passes
#                    are cut first (status "ok (partial)").
#   summary     20   (the reports, and the grace before SIGKILL of the last box)
#
# Environment: PYTHON (default python3), OUT, GPU_CHECK_BUDGET (540),
# GPU_CHECK_JOBS (pytest-xdist workers, default 4; 0 for one process),
# GPU_CHECK_SKIP (stages to leave out: tests, sanitizer, benchmark).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
OUT="${OUT:-$ROOT/gpu-check-output}"
BUDGET="${GPU_CHECK_BUDGET:-540}"
JOBS="${GPU_CHECK_JOBS:-4}"
BUILD_BOX=200
TEST_BOX=180
SUMMARY_RESERVE=20     # the last box's 10 s of grace before SIGKILL, the reports
BENCH_MIN_START=40     # no benchmark run starts with less left than this
TEST_TIMEOUT=150       # per test

mkdir -p "$OUT" || { echo "gpu-check: cannot create OUT=$OUT" >&2; exit 2; }
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
LOG="$OUT/gpu-check.log"
: >"$LOG"
START=$SECONDS

say() { printf '[%4ds] %s\n' "$((SECONDS - START))" "$*" | tee -a "$LOG"; }
left() { echo $((BUDGET - (SECONDS - START))); }
# box WANTED RESERVE: WANTED seconds, cut to what is left of the budget after
# RESERVE seconds kept for the stages that follow; at least 1.
box() {
  local t=$(( $(left) - $2 ))
  (( t > $1 )) && t=$1
  (( t < 1 )) && t=1
  echo "$t"
}
# run_boxed SIGNAL SECONDS LOGFILE CMD...: CMD under `timeout`, output to
# LOGFILE; SIGNAL when the box runs out (INT lets pytest write its report;
# jobs started with & ignore INT, so they get TERM), KILL 10 s later.
# Returns CMD's status: 124 when the box ran out, 137 when killed.
run_boxed() {
  local sig=$1 secs=$2 logfile=$3
  shift 3
  timeout -s "$sig" -k 10 "$secs" "$@" >>"$logfile" 2>&1
}

# The summary rows: name, status, seconds, detail.
ROWS=()
row() { ROWS+=("$1"$'\t'"$2"$'\t'"$3"$'\t'"$4"); say "$1: $2 ($3 s) $4"; }
FAILED=0
failed() { FAILED=1; }

# GPU_CHECK_SKIP="tests sanitizer benchmark" (any of them): stages left out,
# e.g. for a second run after a fix; with the benchmark left out, the tests
# and the sanitizer get all the time left.
SKIP=" ${GPU_CHECK_SKIP:-} "
skipping() { [[ "$SKIP" == *" $1 "* ]]; }

# ------------------------------------------------------------ 1. machine
t0=$SECONDS
M="$LOGS/machine.txt"
CUDA_OK=0
NO_CUDA_WHY=""
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  if commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"; then
    git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit+=" (working tree differs)"
  else
    commit="unknown (not a git checkout)"
  fi
  echo "commit: $commit"
  echo "host: $(uname -srm), $(nproc) cores"
  if command -v nvidia-smi >/dev/null; then
    echo "nvidia-smi: $(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | head -4 | tr '\n' ';')"
  else
    echo "nvidia-smi: not found"
  fi
  echo "python: $(command -v "$PY") $("$PY" --version 2>&1)"
  # One python3 start (importing torch takes seconds): versions, the device,
  # and "cuda: yes|no" for this script.
  timeout 60 "$PY" - <<'PYEOF' 2>&1 || echo "torch: not importable by $PY"
import torch
print("torch:", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device: {p.name}, compute capability {p.major}.{p.minor}, {p.multi_processor_count} SMs, "
          f"{p.total_memory / 2**30:.0f} GiB")
    print("cuda: yes")
else:
    print("device: none (torch.cuda.is_available() is False)")
    print("cuda: no")
PYEOF
  NVCC="$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")"
  echo "nvcc: $([ -x "$NVCC" ] && "$NVCC" --version | tail -1 || echo 'not found')"
  echo "ninja: $(ninja --version 2>/dev/null || echo 'not found (the build would compile one file at a time)')"
  echo "pytest-xdist: $("$PY" -c 'import xdist; print(xdist.__version__)' 2>/dev/null || echo 'not installed (tests in one process)')"
} >"$M" 2>&1
if grep -qx 'cuda: yes' "$M"; then
  CUDA_OK=1
elif grep -qx 'cuda: no' "$M"; then
  NO_CUDA_WHY="no CUDA device"
else
  NO_CUDA_WHY="no CUDA device (torch not importable by $PY)"
fi
sed -i '/^cuda: /d' "$M"
# A GPU that nvidia-smi lists but torch cannot use (a CPU build of torch, a
# driver torch cannot talk to) is a failure, not a dry run; hiding the GPUs
# on purpose (CUDA_VISIBLE_DEVICES= ) still gives the dry run.
GPU_BLIND=0
if (( ! CUDA_OK )) && [ "${CUDA_VISIBLE_DEVICES-unset}" != "" ] \
    && timeout 20 nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  GPU_BLIND=1
  NO_CUDA_WHY="nvidia-smi lists a GPU that torch cannot use"
fi

SANITIZER="$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")"
SANITIZER_OK=0
SANITIZER_WHY="compute-sanitizer not found"
if (( CUDA_OK )) && [ -x "$SANITIZER" ]; then
  # A probe: one allocation and one kernel of torch's, under memcheck. Some
  # virtualized runtimes refuse the device ("Device not supported").
  if timeout 30 "$SANITIZER" --tool memcheck --error-exitcode 1 "$PY" -c \
      "import torch; x = torch.ones(8, device='cuda'); x.add_(1); torch.cuda.synchronize()" \
      >"$LOGS/sanitizer-probe.log" 2>&1; then
    SANITIZER_OK=1
    SANITIZER_WHY=""
  else
    status=$?
    SANITIZER_WHY="$(grep -m1 -iE 'not supported|error|fail' "$LOGS/sanitizer-probe.log" | sed 's/^=* *//' | cut -c1-120)"
    [ -n "$SANITIZER_WHY" ] || SANITIZER_WHY="the probe run failed (exit status $status; sanitizer-probe.log)"
  fi
fi
if (( SANITIZER_OK )); then
  echo "compute-sanitizer: $SANITIZER can use the device" >>"$M"
elif (( CUDA_OK )); then
  echo "compute-sanitizer: cannot use the device: $SANITIZER_WHY" >>"$M"
else
  echo "compute-sanitizer: not probed ($NO_CUDA_WHY)" >>"$M"
fi
cat "$M" >>"$LOG"
cat "$M"
if (( CUDA_OK )); then
  row machine ok $((SECONDS - t0)) "$(grep -m1 '^device:' "$M" | cut -c9-)"
elif (( GPU_BLIND )); then
  failed
  row machine FAILED $((SECONDS - t0)) "$NO_CUDA_WHY; $(grep -m1 '^torch:' "$M")"
else
  row machine ok $((SECONDS - t0)) "$NO_CUDA_WHY; $(grep -m1 '^torch:' "$M")"
fi

# ------------------------------------------------------------ 2. build
BUILT=0
if (( ! CUDA_OK )); then
  row build "skipped: $NO_CUDA_WHY" 0 ""
else
  t0=$SECONDS
  # torch's BuildExtension runs `ninja` from PATH in a temporary folder that
  # an editable install deletes; this stand-in runs the real ninja and keeps
  # its log, which holds every unit's start and end.
  mkdir -p "$WORK/bin"
  REAL_NINJA="$(command -v ninja || true)"
  cat >"$WORK/bin/ninja" <<EOF
#!/usr/bin/env bash
"$REAL_NINJA" "\$@"; status=\$?
[ -f .ninja_log ] && cp .ninja_log "$WORK/ninja_log"
exit \$status
EOF
  chmod +x "$WORK/bin/ninja"
  [ -n "$REAL_NINJA" ] || rm -f "$WORK/bin/ninja"
  B="$LOGS/build.log"
  secs=$(box $BUILD_BOX $((TEST_BOX + 2 * BENCH_MIN_START + SUMMARY_RESERVE)))
  say "build: pip install -e . (MAX_JOBS=$(nproc), time box $secs s)"
  PATH="$WORK/bin:$PATH" TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS="$(nproc)" FORCE_CUDA=1 \
    PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    run_boxed INT "$secs" "$B" "$PY" -m pip install -v --no-build-isolation --no-deps -e .
  status=$?
  detail=""
  if [ -f "$WORK/ninja_log" ]; then
    detail="$("$PY" scripts/gpu_check_report.py ninja "$WORK/ninja_log" "$OUT/build-times.txt" 2>&1 | head -1)"
  fi
  if (( status == 0 )); then
    # The installed package, imported from outside the tree: every op must
    # have a CUDA kernel.
    (cd "$WORK" && timeout 30 "$PY" - >>"$B" 2>&1 <<'PYEOF')
import torch
import conv_ext
ops = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias",
       "conv2d_forward_activation", "activation_backward"]
missing = [op for op in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(f"conv_ext::{op}", "CUDA")]
assert not missing, f"no CUDA kernel for {missing}"
print("CUDA kernels registered for", ", ".join(ops), "from", conv_ext.__file__)
PYEOF
    status=$?
    (( status == 0 )) || detail="no CUDA kernel for some op (see build.log); $detail"
  fi
  if (( status == 0 )); then
    BUILT=1
    row build ok $((SECONDS - t0)) "$detail"
  else
    failed
    if (( status == 124 || status == 137 )); then
      detail="timed out after $secs s; $detail"
    else
      detail="exit status $status; $detail"
    fi
    row build FAILED $((SECONDS - t0)) "$detail"
    grep -m5 -E 'error|Error' "$B" | cut -c1-200 | tee -a "$LOG"
  fi
fi

WHY_NOT_BUILT=$([ -n "$NO_CUDA_WHY" ] && echo "$NO_CUDA_WHY" || echo "the build failed")

# ------------------------------------------- 3. tests and 4. sanitizer
# sanitize TOOL SECONDS: one compute-sanitizer tool on the subset; prints
# its summary row. The three tools run in the background beside the tests.
sanitize() {
  local tool=$1 secs=$2 logfile="$LOGS/sanitizer-$1.log" t0=$SECONDS status vars=() extra=()
  if [ "$tool" = memcheck ]; then
    # No caching allocator: every tensor is its own allocation, so a read
    # past its end is out of bounds instead of inside the pool. (Any value
    # of the variable turns caching off in some torch versions: set or not.)
    vars=(PYTORCH_NO_CUDA_MEMORY_CACHING=1)
  else
    extra=(--kernel-name kns=conv_ext)
  fi
  run_boxed TERM "$secs" "$logfile" env "${vars[@]}" "$SANITIZER" --tool "$tool" --error-exitcode 1 \
    "${extra[@]}" "$PY" tests/sanitizer_subset.py
  status=$?
  local summary
  summary="$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitizer subset:' "$logfile" | sed 's/^=* *//' | tr '\n' ' ')"
  if grep -qi 'device not supported' "$logfile"; then
    printf 'sanitizer %s\tnot available on this machine\t%s\t%s\n' "$tool" $((SECONDS - t0)) "Device not supported"
  elif (( status == 0 )); then
    printf 'sanitizer %s\tok\t%s\t%s\n' "$tool" $((SECONDS - t0)) "$summary"
  elif (( status == 124 || status == 137 )); then
    printf 'sanitizer %s\tFAILED\t%s\t%s\n' "$tool" $((SECONDS - t0)) "timed out after $secs s; $summary"
  else
    printf 'sanitizer %s\tFAILED\t%s\t%s\n' "$tool" $((SECONDS - t0)) "exit status $status; $summary"
  fi
}

TOOLS=(memcheck synccheck racecheck)
if (( ! BUILT )); then
  row tests "skipped: $WHY_NOT_BUILT" 0 ""
  for tool in "${TOOLS[@]}"; do row "sanitizer $tool" "skipped: $WHY_NOT_BUILT" 0 ""; done
else
  if skipping benchmark; then
    window=$(box $(( $(left) )) $SUMMARY_RESERVE)
  else
    window=$(box $TEST_BOX $((BENCH_MIN_START + SUMMARY_RESERVE)))
  fi
  # One row file per tool, read back in this order after the tests.
  SAN_PIDS=()
  for tool in "${TOOLS[@]}"; do
    rowfile="$WORK/sanitizer-$tool.row"
    if skipping sanitizer; then
      printf 'sanitizer %s\tskipped: GPU_CHECK_SKIP\t0\t\n' "$tool" >"$rowfile"
    elif (( SANITIZER_OK )); then
      sanitize "$tool" "$window" >"$rowfile" 2>>"$LOG" &
      SAN_PIDS+=($!)
    else
      printf 'sanitizer %s\tnot available on this machine\t0\t%s\n' "$tool" "$SANITIZER_WHY" >"$rowfile"
    fi
  done
  (( ${#SAN_PIDS[@]} )) && say "sanitizer: ${TOOLS[*]} side by side in the background (time box $window s each)"

  if skipping tests; then
    row tests "skipped: GPU_CHECK_SKIP" 0 ""
  else
    t0=$SECONDS
    T="$LOGS/tests.log"
    xdist=()
    if (( JOBS > 0 )) && "$PY" -c "import xdist" >/dev/null 2>&1; then
      # Each worker gets its share of the cores for the CPU references.
      xdist=(-n "$JOBS")
      export OMP_NUM_THREADS=$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))
    fi
    say "tests: pytest -m 'cuda and not fuzz' ${xdist[*]} (time box $window s, $TEST_TIMEOUT s per test)"
    CONV_EXT_TEST_TIMEOUT=$TEST_TIMEOUT PYTHONUNBUFFERED=1 \
      run_boxed INT "$window" "$T" "$PY" -m pytest -m "cuda and not fuzz" -p no:cacheprovider -v -rfEs \
      --durations=25 --junitxml="$OUT/junit-cuda.xml" "${xdist[@]}"
    status=$?
    unset OMP_NUM_THREADS
    "$PY" scripts/gpu_check_report.py junit "$OUT/junit-cuda.xml" "$T" >"$WORK/junit.txt" 2>&1
    counted=$?
    detail="$(head -1 "$WORK/junit.txt")"
    (( status == 124 || status == 137 )) && detail="timed out after $window s; $detail"
    if (( status == 0 && counted == 0 )); then
      row tests ok $((SECONDS - t0)) "$detail"
    else
      failed
      (( status == 0 )) || detail="$detail (pytest exit status $status)"
      row tests FAILED $((SECONDS - t0)) "$detail"
      tail -n +2 "$WORK/junit.txt" | head -40 | tee -a "$LOG"
    fi
  fi

  for pid in "${SAN_PIDS[@]}"; do wait "$pid"; done
  for tool in "${TOOLS[@]}"; do
    IFS=$'\t' read -r name status secs detail <"$WORK/sanitizer-$tool.row" \
      || { name="sanitizer $tool"; status=FAILED; secs=0; detail="no result"; }
    [ "$status" = FAILED ] && failed
    row "$name" "$status" "$secs" "$detail"
  done
fi

# ------------------------------------------------------------ 5. benchmark
if (( ! BUILT )); then
  row benchmark "skipped: $WHY_NOT_BUILT" 0 ""
elif skipping benchmark; then
  row benchmark "skipped: GPU_CHECK_SKIP" 0 ""
else
  t0=$SECONDS
  DTYPES=(float32 tf32 bfloat16)
  RUNS=()
  notes=""
  crashed=0
  bench_round() {  # bench_round TAG PASS...: one run per dtype, each a share of the time left
    local tag=$1 i n=${#DTYPES[@]} secs json
    shift
    for i in "${!DTYPES[@]}"; do
      local dt=${DTYPES[$i]}
      secs=$(( ($(left) - SUMMARY_RESERVE) / (n - i) ))
      if (( secs < BENCH_MIN_START )); then
        notes+=" $dt $tag: no time left;"
        continue
      fi
      json="$WORK/bench-$dt-$tag.json"
      say "benchmark: $dt $* (time box $secs s)"
      run_boxed INT "$secs" "$LOGS/bench-$dt-$tag.log" "$PY" -m benchmarks --device cuda --dtype "$dt" \
        --passes "$@" --no-progress --json "$json" --markdown "$WORK/bench-$dt-$tag.md"
      local status=$?
      if (( status == 124 || status == 137 )); then
        notes+=" $dt $tag: timed out after $secs s;"
      elif [ ! -f "$json" ]; then
        notes+=" $dt $tag: exit status $status, no results;"
        crashed=1
      fi
      RUNS+=("$json")
    done
  }
  bench_round headline forward forward_backward
  bench_round backward backward_input backward_weight backward_bias
  detail="$("$PY" scripts/gpu_check_report.py bench "$OUT/bench-cuda.json" "$OUT/bench-cuda.md" "${RUNS[@]}" 2>&1 | tail -1)"
  status=$?
  (( crashed )) && status=1
  if (( status == 0 )) && [ -z "$notes" ]; then
    row benchmark ok $((SECONDS - t0)) "$detail"
  elif (( status == 0 )); then
    row benchmark "ok (partial)" $((SECONDS - t0)) "$detail;$notes"
  else
    failed
    row benchmark FAILED $((SECONDS - t0)) "$detail;$notes"
  fi
fi

# ------------------------------------------------------------ summary
{
  echo "## make gpu-check: summary"
  echo
  grep -E '^(date|commit|nvidia-smi|torch|device|nvcc):' "$LOGS/machine.txt" | sed 's/^/    /'
  echo
  echo "| stage | status | seconds | detail |"
  echo "|---|---|---|---|"
  for r in "${ROWS[@]}"; do
    IFS=$'\t' read -r name status secs detail <<<"$r"
    echo "| $name | $status | $secs | ${detail//|//} |"
  done
  echo
  echo "total $((SECONDS - START)) s of the $BUDGET s budget; exit status $FAILED"
} >"$OUT/summary.md"
cp "$LOG" "$LOGS/gpu-check.log"
tar -C "$WORK" -czf "$OUT/logs.tar.gz" logs $(cd "$WORK" && ls bench-*.json bench-*.md ninja_log 2>/dev/null) 2>/dev/null
rm -rf "$WORK"
echo
cat "$OUT/summary.md"
exit $FAILED
