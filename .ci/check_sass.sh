#!/usr/bin/env bash
# Proof from the compiled code, without a GPU: reads the SASS of the built
# CUDA extension (cuobjdump, which ships in the triton package of the CUDA
# build of torch) and fails when
#   - a tensor-core kernel (csrc/cuda/tensorop/) has no HMMA instruction, or
#   - any conv_ext kernel touches local memory (LDL/STL: register spills or a
#     stack frame), unless ALLOWED_LOCAL below names it with the reason.
# Prints, per kernel, the registers, stack and shared memory ptxas gave it
# (cuobjdump --dump-resource-usage) and its HMMA, LDSM, LDGSTS, LDL/STL and
# FFMA/DFMA counts.
#
#   bash .ci/check_sass.sh [path/to/conv_ext/_C*.so | objects.o ...]
#
# Without an argument, the extension that .ci/build_cuda.sh installed into
# .venv-cuda is checked; nvcc objects of single .cu files work too.
set -euo pipefail
echo "== check_sass: tensor-core kernels have HMMA, no kernel uses local memory"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-cuda"
fail() { printf '\ncheck_sass: FAILED: %s\n' "$*" >&2; exit 1; }

FILES=("$@")
if [ ${#FILES[@]} -eq 0 ]; then
  SO=$(find "$VENV/lib" -path '*site-packages/conv_ext/_C*.so' 2>/dev/null | head -1)
  [ -n "$SO" ] || fail "no built conv_ext/_C*.so (run .ci/build_cuda.sh first or pass its path)"
  FILES=("$SO")
fi
for f in "${FILES[@]}"; do
  [ -f "$f" ] || fail "no such file: $f"
done
CUOBJDUMP="${CUOBJDUMP:-$(command -v cuobjdump || true)}"
if [ -z "$CUOBJDUMP" ]; then
  CUOBJDUMP=$(find "$VENV" /usr/local/cuda/bin -name cuobjdump -type f 2>/dev/null | head -1 || true)
fi
[ -n "$CUOBJDUMP" ] || fail "no cuobjdump (expected in .venv-cuda's triton package or /usr/local/cuda/bin)"
PY=python3
[ -x "$VENV/bin/python" ] && PY="$VENV/bin/python"

SASS=$(mktemp) RES=$(mktemp)
trap 'rm -f "$SASS" "$RES"' EXIT
for f in "${FILES[@]}"; do
  "$CUOBJDUMP" --dump-sass "$f" >> "$SASS" || fail "cuobjdump --dump-sass failed on $f"
  "$CUOBJDUMP" --dump-resource-usage "$f" >> "$RES" || fail "cuobjdump --dump-resource-usage failed on $f"
done
"$PY" - "$SASS" "$RES" <<'PY'
import re
import shutil
import subprocess
import sys

sass_text = open(sys.argv[1]).read()
res_text = open(sys.argv[2]).read()

# Kernels allowed to use local memory, by a substring of the demangled name,
# each with the reason. Keep this empty unless a spill is understood and
# cheaper to keep than to remove.
ALLOWED_LOCAL = {
    "direct_backward_input_kernel<double, long>":
        "the 64-bit-index variant, run only when grad_input has 2^31 elements or more: its "
        "Divmod<int64_t> splits the flat index with the 64-bit division subroutine, and around "
        "that call ptxas keeps 32 bytes of live float64 state on the stack (LDL/STL per element, "
        "against 8+ bytes of grad_output and weight traffic per tap: not the bottleneck). The "
        "32-bit variant every other size runs has no local memory.",
}

def demangle(names):
    if not names or shutil.which("c++filt") is None:
        return {n: n for n in names}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.split("\n")
    return dict(zip(names, out))

# cuobjdump prints "Function : <mangled name>" before each kernel's code.
kernels = {}
for chunk in sass_text.split("Function : ")[1:]:
    name, _, body = chunk.partition("\n")
    name = name.strip()
    ops = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)[.\s]", body)
    count = lambda *prefixes: sum(1 for o in ops if o in prefixes)  # noqa: E731
    kernels[name] = {
        "HMMA": count("HMMA"), "LDSM": count("LDSM"), "LDGSTS": count("LDGSTS"),
        "LDL": count("LDL"), "STL": count("STL"), "FFMA": count("FFMA"), "DFMA": count("DFMA"),
    }

resources = {}
for m in re.finditer(r"Function (\S+):\s*\n?\s*REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", res_text):
    resources[m.group(1)] = tuple(int(v) for v in m.group(2, 3, 4, 5))

names = sorted(n for n in kernels if "conv_ext" in n)
if not names:
    sys.exit("check_sass: no conv_ext kernels in the SASS (was the extension built with CUDA?)")
pretty = demangle(names)

def short(n):
    p = pretty[n]
    p = re.sub(r"conv_ext::cuda::(tensorop::)?", "", p)
    p = p.replace("c10::BFloat16", "bf16").replace("c10::Half", "fp16")
    return p[:120]

errors = []
print(f"{'REG':>4} {'STACK':>5} {'SMEM':>6} {'HMMA':>5} {'LDSM':>5} {'LDGSTS':>6} {'LDL/STL':>7} {'FFMA':>5} {'DFMA':>5}  kernel")
for n in names:
    k = kernels[n]
    reg, stack, shared, local = resources.get(n, (-1, -1, -1, -1))
    print(f"{reg:>4} {stack:>5} {shared:>6} {k['HMMA']:>5} {k['LDSM']:>5} {k['LDGSTS']:>6} "
          f"{k['LDL'] + k['STL']:>7} {k['FFMA']:>5} {k['DFMA']:>5}  {short(n)}")
    if "tensorop" in n and k["HMMA"] == 0:
        errors.append(f"tensor-core kernel without HMMA: {pretty[n]}")
    uses_local = k["LDL"] + k["STL"] > 0 or stack > 0 or local > 0
    allowed = [a for a in ALLOWED_LOCAL if a in short(n)]
    if uses_local and allowed:
        print(f"      allowed: {ALLOWED_LOCAL[allowed[0]]}")
    if uses_local and not allowed:
        errors.append(f"local memory (LDL {k['LDL']}, STL {k['STL']}, stack {stack} B) in {pretty[n]}")

tensorop = [n for n in names if "tensorop" in n]
print(f"\n{len(names)} conv_ext kernels, {len(tensorop)} on tensor cores "
      f"({sum(kernels[n]['HMMA'] for n in tensorop)} HMMA in all)")
if not tensorop:
    errors.append("no tensor-core kernels (csrc/cuda/tensorop/) in the build")
if errors:
    print("\ncheck_sass: FAILED:\n  " + "\n  ".join(errors), file=sys.stderr)
    sys.exit(1)
print("check_sass: ok")
PY
