# `make test`: create .venv (Python 3.11) when missing, install the runtime + test requirements (and Debian's chromium
#   when root), run the whole test suite: the same tests as CI (.ci/run = `CI=true make test`). Only the golden
#   tests can skip, when ../shared/golden is absent (CI turns that into a failure). `make test ALLOW_SKIP=1` does not
#   require chromium (its browser tests then skip).
# `make test-fast`: the same environment, only the tests not marked `slow` (pytest -m "not slow": a few minutes;
#   no chromium needed, the browser tests are slow ones). Markers: pyproject.toml, tests/conftest.py.
# `make demo`: same environment, then the offline demo (compact model trained here, synthetic sequence; below).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the one sam2 pin (requirements-optional.txt): pure Python (no CUDA extension), built against the installed torch
SAM2_REQ := $(shell grep -E '^sam2' requirements-optional.txt)

.PHONY: test test-fast demo train-small venv bench clean test-prereqs

venv: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt requirements-optional.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-test.txt "setuptools>=70.1"
	SAM2_BUILD_CUDA=0 $(PY) -m pip install -q --no-build-isolation "$(SAM2_REQ)"
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

ifeq ($(ALLOW_SKIP),1)
test: $(STAMP)
	$(PY) -m pytest -q tests
else
test: $(STAMP) test-prereqs
	$(PY) -m pytest -q tests
endif

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# system packages pip cannot install: Debian's chromium for the browser tests (viewer, GUI). Installed here when
# missing and possible (root with apt-get, as on CI); otherwise stop before the long run and say what to do.
test-prereqs:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && echo "installing Debian's chromium (browser tests)" && \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null 2>&1; } || \
	{ echo "error: the browser tests (viewer, GUI) need Debian's chromium: apt-get install chromium," \
	       "or run 'make test ALLOW_SKIP=1' to skip them" >&2; exit 2; }

# `make demo` (offline): the held-out synthetic sequence (seed 0, 24 frames of 224x224, never used in training),
#   the demo with the compact model trained here (checkpoints/monst3r_synthetic_small.pth, --image_size 224), then
#   the scores against the sequence's ground truth and the viewer command. The flow loss is on when the SEA-RAFT
#   weights are in third_party/RAFT/models (bash data/download_ckpt.sh flow), off otherwise.
# `make demo WEIGHTS=official`: the official MonST3R weights from the Hugging Face hub (needs the network the
#   first time) on a 512x288 synthetic sequence, at the demo's defaults (--image_size 512).
WEIGHTS ?= compact
SEARAFT := third_party/RAFT/models/Tartan-C-T-TSKH-spring540x960-M
FLOW_OFF = $$(test -f $(SEARAFT).pth || test -f $(SEARAFT).safetensors || echo "--flow_loss_weight 0")
VIEW_HINT = echo "view it in 4D: $(PY) viser/visualizer_monst3r.py --data"

ifeq ($(WEIGHTS),official)
demo: $(STAMP)
	@test -d demo_tmp/synthetic_input_512 || $(PY) -m monst3r.datasets.synthetic --out demo_tmp/synthetic_input_512 \
		--frames 24 --size 512x288 --seed 0
	@test -f $(SEARAFT).pth || test -f $(SEARAFT).safetensors || bash data/download_ckpt.sh flow || \
		echo "note: optical-flow weights unavailable; running without the flow loss"
	$(PY) demo.py --input demo_tmp/synthetic_input_512 --output_dir demo_tmp --seq_name synthetic_official \
		$(FLOW_OFF) $(DEMO_ARGS)
	@$(VIEW_HINT) demo_tmp/synthetic_official
else ifeq ($(WEIGHTS),compact)
demo: $(STAMP)
	@$(PY) -m monst3r.eval.synthetic scene --out demo_tmp/synthetic_input --seed 0
	$(PY) demo.py --input demo_tmp/synthetic_input --output_dir demo_tmp --seq_name synthetic \
		--weights checkpoints/monst3r_synthetic_small.pth --image_size 224 $(FLOW_OFF) $(DEMO_ARGS)
	@echo "scores against the ground truth of demo_tmp/synthetic_input:"
	@$(PY) -m monst3r.eval.synthetic score demo_tmp/synthetic demo_tmp/synthetic_input
	@$(VIEW_HINT) demo_tmp/synthetic
else
demo:
	@echo "error: WEIGHTS=$(WEIGHTS): use WEIGHTS=compact (default, offline) or WEIGHTS=official" >&2; exit 2
endif

# `make train-small`: retrain the compact model from scratch (recipes/train_small.sh: scenes, 2-process torchrun
#   training on the CPU, export to checkpoints/monst3r_synthetic_small.pth; about an hour on 2 cores).
train-small: $(STAMP)
	bash recipes/train_small.sh

bench: $(STAMP)
	$(PY) bench/bench_forward.py --config small --size 160 --batch 2 --device cpu

clean:
	rm -rf $(VENV) .pytest_cache
