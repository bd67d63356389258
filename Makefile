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

EVAL ?= S11
SEEDS ?= 1
ABLATION_OUT ?= runs/ablation
# The real-data data-scaling recipe (semi-supervised protocol: finetuning sees S1's 2D-3D pairs only,
# pretraining also the 2D of S5-S8): `make ablation DATA=<root with h36m/ S1, S5-S8, S11>`; the configs
# are pretrain/configs/h36m-semi.yaml and finetune/configs/h36m-semi.yaml.

.PHONY: demo ablation test setup clean

# Every install is held to the versions the suite passed with (constraints.txt; CONSTRAINTS= lifts it,
# see that file's header for updating it).
CONSTRAINTS ?= constraints.txt
PIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel $(PIN)
	$(BIN)/pip install --quiet torch==2.13.0 $(PIN)
	$(BIN)/pip install --quiet --no-build-isolation "deepspeed>=0.16" $(PIN)
	$(BIN)/pip install --quiet -e ".[dev]" --config-settings editable_mode=compat $(PIN)
	touch $@

setup: $(VENV)/.installed

demo: setup
	./demo.sh "$(DATA)" "$(OUT)"

ablation: setup
	@test -n "$(DATA)" || { echo "make ablation needs DATA=<data root with h36m/>" >&2; exit 2; }
	CONFIG=h36m-semi FINETUNE_CONFIG=h36m-semi SCALES="semi-small semi-base semi-large" PROBE=1 EVAL="$(EVAL)" \
	  SEEDS=$(SEEDS) ./demo.sh "$(DATA)" "$(ABLATION_OUT)"

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q

clean:
	rm -rf $(OUT)
