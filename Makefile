# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# EXTRAS picks the one TensorFlow distribution: cpu (tensorflow-cpu) or, on an NVIDIA machine,
# `make install EXTRAS=gpu,test,serve,interop` (tensorflow[and-cuda]); add jax-gpu for JAX on the
# GPU. serve: FAISS gallery indexes and the HTTP service (kerasface-serve), whose tests skip without
# it. interop: onnx, onnxruntime, tf2onnx, ai-edge-litert (kerasface-import-model, ONNX/LiteRT export).
PYTHON ?= python3
EXTRAS ?= cpu,test,serve,interop
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# two pytest workers, each test file whole on one (its module fixtures built once): much of a test
# is single-threaded Python, so two cores finish sooner (docs/benchmarks.md, "Test suite"); more
# workers would multiply the memory. PARALLEL= runs one process.
PARALLEL ?= -n 2 --dist loadfile

.PHONY: demo test test-tf test-jax install clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) pipelines/train_branches.py --backbone densenet121

test: $(STAMP)
	$(MAKE) --no-print-directory test-tf test-jax

test-tf: $(STAMP)
	$(PY) -m pytest -q $(PARALLEL)

test-jax: $(STAMP)
	KERAS_BACKEND=jax $(PY) -m pytest -q -m backend $(PARALLEL)

clean:
	rm -rf $(VENV) build *.egg-info
