# Two commands set everything up on a fresh machine:
#   make demo   builds conv_ext and runs the demos into ./demo-output
#   make test   builds conv_ext and runs the test suite
# and one opens the lesson:
#   make lesson builds conv_ext and opens the lesson notebook in JupyterLab
# and one for a machine with a GPU (a dry run without one):
#   make gpu-check   builds, tests, sanitizes and benchmarks the CUDA side
#                    (scripts/gpu_check.sh; results in $OUT, default ./gpu-check-output)
# If the active Python already has torch, it is used as it is; otherwise a
# virtual environment .venv gets the CPU build of $(TORCH_SPEC).
TORCH_SPEC ?= torch==2.13.0
PY := $(shell python3 -c "import torch" >/dev/null 2>&1 && echo python3 || echo .venv/bin/python)
PIP := $(PY) -m pip
SOURCES := $(shell find setup.py pyproject.toml csrc -type f)
STAMP := build/.installed-$(subst /,_,$(PY))

.PHONY: install test demo lesson bench gpu-check clean

$(STAMP): $(SOURCES)
	@if [ "$(PY)" = ".venv/bin/python" ] && [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
	@$(PY) -c "import torch" >/dev/null 2>&1 || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -q numpy pytest hypothesis onnx onnxscript onnxruntime tqdm matplotlib plotly scikit-learn nbformat nbclient ipykernel setuptools wheel
	MAX_JOBS=$${MAX_JOBS:-2} $(PIP) install --no-build-isolation --no-deps -e .
	@mkdir -p build && touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) -m conv_ext.demos all --out demo-output
	@echo "Figures (PNG) and interactive pages (HTML) are in ./demo-output"

# JupyterLab only here: the tests run the notebook with nbclient alone.
lesson: install
	$(PIP) install -q jupyterlab
	$(PY) -m jupyter lab docs/lesson.ipynb

bench: install
	$(PY) -m benchmarks --device cpu --markdown bench-output/cpu.md --json bench-output/cpu.json --plot bench-output/cpu.png

# Builds on its own (offline, editable, for sm_90), so it does not depend on
# install, which may reach for a package registry.
gpu-check:
	PYTHON=$(PY) bash scripts/gpu_check.sh

clean:
	rm -rf build conv_ext/*.so demo-output bench-output gpu-check-output
