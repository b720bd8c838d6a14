# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-tf test-jax install clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) pipelines/train_branches.py --backbone densenet121

test: $(STAMP)
	$(MAKE) --no-print-directory test-tf test-jax

test-tf: $(STAMP)
	$(PY) -m pytest -q

test-jax: $(STAMP)
	KERAS_BACKEND=jax $(PY) -m pytest -q -m backend

clean:
	rm -rf $(VENV) build *.egg-info
