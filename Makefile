# posemill: `make demo` runs the main job on the embedded default data (`make demo DATA=DIR` on a data
# root), `make test` runs the tests. Both set themselves up on a fresh machine: a virtual environment in
# the checkout, torch 2.13.0 (CPU build) first, then DeepSpeed (built against it), then the project
# (editable in "compat" mode: a plain path entry, so a folder named like a package, e.g. an output folder
# called shards/, in the working directory cannot shadow it).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?=
OUT ?= runs/demo

.PHONY: demo test setup clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --no-build-isolation "deepspeed>=0.16"
	$(BIN)/pip install --quiet -e ".[dev]" --config-settings editable_mode=compat
	touch $@

setup: $(VENV)/.installed

demo: setup
	./demo.sh "$(DATA)" "$(OUT)"

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q

clean:
	rm -rf $(OUT)
