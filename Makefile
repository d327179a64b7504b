# The README's two commands: `make lab` opens the course, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kitchenlab-installed

.PHONY: lab test unit notebooks browser bench clean

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

# Unit tests, every notebook under nbval, the browser tests; then the notebook table.
test: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests \
	    --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
	    notebooks

unit: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests -m "not browser"

notebooks: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider --nbval --nbval-current-env \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks

browser: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests/browser

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) test-output .pytest_cache
