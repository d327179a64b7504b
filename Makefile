# The README's two commands: `make lab` opens the course, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kitchenlab-installed

.PHONY: lab test unit notebooks notebooks-second-pass browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# As root (containers), JupyterLab refuses to start without --allow-root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	$(BIN)/jupyter lab $(ROOT_FLAG) notebooks/00_kitchen_tour.ipynb

NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

# The second notebook pass runs every notebook again on another XLA CPU code path (vector
# instructions capped at AVX: other kernels, other rounding in the last bits). Stored outputs
# must match on both, so nothing a notebook prints depends on the last bits of floating
# point (a learner's laptop, Binder and the next CI machine are all "another machine").
# Timing is not the point of that pass: its limit is relaxed. x86-64 only (the flag names
# x86 instruction sets).
SECOND_PASS := XLA_FLAGS=--xla_cpu_max_isa=AVX KITCHENLAB_NB_PASS=isa-avx KITCHENLAB_NB_MAX_S=150
ARCH := $(shell uname -m)

# Unit tests, every notebook under nbval (one core, cold compile cache, metered), the browser
# tests; then every notebook again under the second XLA code path.
test: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests $(NBVAL) notebooks
	$(MAKE) --no-print-directory notebooks-second-pass

unit: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests -m "not browser"

notebooks: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider $(NBVAL) notebooks

notebooks-second-pass: $(STAMP)
ifeq ($(ARCH),x86_64)
	$(SECOND_PASS) $(BIN)/python -m pytest -p no:cacheprovider $(NBVAL) notebooks
else
	@echo "second notebook pass skipped: --xla_cpu_max_isa names x86 instruction sets ($(ARCH))"
endif

browser: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests/browser

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) test-output .pytest_cache
