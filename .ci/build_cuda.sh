#!/usr/bin/env bash
# Proves that the CUDA sources compile and register on a machine without a
# GPU: builds conv_ext against the CUDA 13.0 build of torch with nvcc, for
# sm_90 (H100), then imports it from outside the source tree and asserts
# that all four ops have CUDA kernels.
#
#   bash .ci/build_cuda.sh
#   CUDA_TORCH_VERSION=2.11.0 bash .ci/build_cuda.sh   # against another torch
#
# Uses .venv-cuda/ in the repository root (created on first use, kept for
# later runs); another CUDA_TORCH_VERSION than the default gets its own
# .venv-cuda-<version>/, so that checking against the torch of a GPU
# machine (make gpu-check builds against whatever torch is there) does not
# replace the default one. The sources are copied to the venv's src/ and
# built there, so this build never shares build/ with the CPU development
# build; ninja recompiles only what changed since the last run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEFAULT_TORCH_VERSION="2.14.1"
TORCH_VERSION="${CUDA_TORCH_VERSION:-$DEFAULT_TORCH_VERSION}"
if [ "$TORCH_VERSION" = "$DEFAULT_TORCH_VERSION" ]; then
  VENV="$ROOT/.venv-cuda"
else
  VENV="$ROOT/.venv-cuda-$TORCH_VERSION"
fi
SRC="$VENV/src"
PYTHON="${PYTHON:-python3}"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"

step() { printf '\n== build_cuda: %s\n' "$*"; }
fail() { printf '\nbuild_cuda: FAILED: %s\n' "$*" >&2; exit 1; }

[ -x "$CUDA_HOME/bin/nvcc" ] || fail "no nvcc at $CUDA_HOME/bin/nvcc (set CUDA_HOME)"

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  "$PYTHON" -m venv "$VENV" || fail "could not create the virtual environment"
fi
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION' or torch.version.cuda is None)" 2>/dev/null; then
  step "installing torch==$TORCH_VERSION (CUDA build), numpy, setuptools, wheel"
  "$VENV/bin/pip" install --quiet "torch==$TORCH_VERSION" numpy setuptools wheel \
    || fail "pip could not install torch==$TORCH_VERSION"
fi
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
"$CUDA_HOME/bin/nvcc" --version | tail -1

step "copying the sources to $SRC"
mkdir -p "$SRC"
find "$SRC" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
# Tracked files and untracked ones that .gitignore does not exclude: what a
# clean checkout with the working tree's edits would hold.
git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
  | tar -C "$ROOT" --null --ignore-failed-read -T - -cf - \
  | (cd "$SRC" && tar xf -) || fail "could not copy the sources"
[ -f "$SRC/setup.py" ] || fail "no setup.py among the copied sources"

step "building with nvcc (FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST=9.0)"
(cd "$SRC" && FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="9.0" MAX_JOBS="${MAX_JOBS:-2}" \
  "$VENV/bin/pip" install --no-build-isolation --no-deps . ) \
  || fail "the CUDA build of conv_ext did not compile (see the compiler output above)"

step "importing conv_ext and checking for CUDA kernels"
(cd "$(mktemp -d)" && "$VENV/bin/python" - <<'PY') || fail "conv_ext did not register CUDA kernels for every op"
import conv_ext
import torch

assert "site-packages" in conv_ext.__file__, f"imported the source tree, not the build: {conv_ext.__file__}"
ops = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias",
       "conv2d_forward_activation", "activation_backward"]
missing = [op for op in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(f"conv_ext::{op}", "CUDA")]
assert not missing, f"no CUDA kernel for {missing}"
print("CUDA kernels registered for", ", ".join(ops))
PY
step "ok"
