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

# EVAL: test subjects; empty: every test subject the store holds (S9 and S11 when present)
EVAL ?=
SEEDS ?= 1
ABLATION_OUT ?= runs/ablation
# The real-data data-scaling recipe: `make ablation DATA=<root with h36m/ S1, S5-S8, S11>`. OUT/s1: the
# semi-supervised protocol (finetuning sees S1's 2D-3D pairs only, pretraining also the 2D of S5-S8; configs
# pretrain/configs/h36m-semi.yaml, finetune/configs/h36m-semi.yaml); OUT/full: full supervision (finetuning
# on S1, S5-S8, finetune/configs/h36m-full.yaml) of the same semi-large networks (--pretrained-from OUT/s1:
# no second pretraining) against scratch.

# Human3.6M at full protocol (`make h36m DATA=<root with h36m/> [EVAL="S9 S11"] [INPUT=gt|sh]`): train on
# S1, S5-S8, evaluate every frame and camera of EVAL; INPUT=sh uses the Stacked Hourglass detections.
INPUT ?= gt
H36M_OUT ?= runs/h36m-$(INPUT)
H36M_EVAL = [$(subst $(space),$(comma) ,$(strip $(EVAL)))]
space := $(subst ,, )
comma := ,

# One table of the field's lifters (`make compare DATA=<root with h36m/: S1, S5-S8, S11>`): every backbone of
# BACKBONES finetuned with the same recipe (finetune/configs/h36m-semi.yaml: S1's pairs, 800 steps of batch 128) on
# COMPARE_FRAMES-frame windows at its released size, MPM from `make ablation`'s semi-large network when it exists
# (MPM_INIT; else from scratch), MPM's refine stage as one more row; COMPARE_SET: per-backbone overrides
# (NAME:KEY=VALUE ..., e.g. dstformer:model.size=lite); COMPARE_BUDGET (e.g. 6m): equal wall time per backbone
# instead of equal steps (then no refine row). COMPARE_OUT/results.md and comparison.png.
COMPARE_OUT ?= runs/compare
COMPARE_BUDGET ?=
BACKBONES ?= mpm videopose3d poseformer simplebaseline dstformer
COMPARE_FRAMES ?= 27
COMPARE_SET ?=
MPM_INIT ?= $(ABLATION_OUT)/s1/semi-large/pretrain/pretrained.pt

.PHONY: demo ablation compare h36m wild test setup clean

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
	  SEEDS=$(SEEDS) ABLATION_DIR="$(ABLATION_OUT)/s1" ./demo.sh "$(DATA)" "$(ABLATION_OUT)"
	$(BIN)/python -m experiments.ablate --shards "$(ABLATION_OUT)/shards" --store "$(ABLATION_OUT)/store" \
	  --scales semi-large --pretrained-from "$(ABLATION_OUT)/s1" --config h36m-semi --finetune-config h36m-full \
	  $(if $(EVAL),--eval-subjects $(EVAL)) --seeds $(SEEDS) --out "$(ABLATION_OUT)/full"

compare: setup
	@test -n "$(DATA)" || { echo "make compare needs DATA=<data root with h36m/>" >&2; exit 2; }
	$(BIN)/python -m ingest h36m "$(DATA)/h36m" --store "$(COMPARE_OUT)/store" --no-progress || test $$? -eq 1
	test -f "$(COMPARE_OUT)/shards/manifest.json" || $(BIN)/python -m shards build --store "$(COMPARE_OUT)/store" \
	  --out "$(COMPARE_OUT)/shards" --clip-len $(COMPARE_FRAMES)
	$(BIN)/python -m experiments.compare --store "$(COMPARE_OUT)/store" --shards "$(COMPARE_OUT)/shards" \
	  --backbones $(BACKBONES) --config h36m-semi --frames $(COMPARE_FRAMES) --seeds $(SEEDS) --out "$(COMPARE_OUT)" \
	  $(if $(COMPARE_BUDGET),--budget $(COMPARE_BUDGET),$(if $(filter mpm,$(BACKBONES)),--refine)) \
	  $(if $(wildcard $(MPM_INIT)),--mpm-init "$(MPM_INIT)") \
	  $(if $(EVAL),--eval-subjects $(EVAL)) $(foreach o,$(COMPARE_SET),--backbone-set $(o))

# Lifting in the wild, checked against truth (`make wild DATA=<root with h36m/S11> [LIFTER=lifter.pt]`): 10 s of
# S11 projected through its real camera, written in every detector layout python -m finetune.infer reads,
# lifted back and scored (experiments/wild.py); LIFTER defaults to the large scale's lifter of `make demo`.
LIFTER ?= $(OUT)/ablation/large/finetune/lifter.pt
WILD_OUT ?= runs/wild

wild: setup
	@test -n "$(DATA)" || { echo "make wild needs DATA=<data root with h36m/S11>" >&2; exit 2; }
	@test -f "$(LIFTER)" || { echo "no lifter at $(LIFTER): run make demo DATA=$(DATA) first, or pass LIFTER=" >&2; exit 2; }
	$(BIN)/python -m experiments.wild "$(DATA)" --checkpoint "$(LIFTER)" --out "$(WILD_OUT)" --render

h36m: setup
	@test -n "$(DATA)" || { echo "make h36m needs DATA=<data root with h36m/>" >&2; exit 2; }
	@case "$(INPUT)" in gt|sh) ;; *) echo "INPUT must be gt or sh, not $(INPUT)" >&2; exit 2;; esac
	$(BIN)/python -m ingest h36m "$(DATA)/h36m" --store "$(H36M_OUT)/store" --no-progress \
	  $(if $(filter sh,$(INPUT)),--detections sh) || test $$? -eq 1  # 1: some files failed, listed above
	test -f "$(H36M_OUT)/shards/manifest.json" || \
	  $(BIN)/python -m shards build --store "$(H36M_OUT)/store" --out "$(H36M_OUT)/shards" --clip-len 27
	$(BIN)/python -m finetune --config h36m --store "$(H36M_OUT)/store" --shards "$(H36M_OUT)/shards" \
	  --out "$(H36M_OUT)" --resume --no-progress $(if $(EVAL),--set "eval.subjects=$(H36M_EVAL)")

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

clean:
	rm -rf $(OUT)
