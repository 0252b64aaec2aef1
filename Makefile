# `make test`: create .venv (Python 3.11) when missing, install the requirements, run the test suite.
# `make demo`: same environment, then run the demo on the embedded synthetic sequence.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo venv bench clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

DEMO_INPUT := demo_tmp/synthetic_input
SEARAFT := third_party/RAFT/models/Tartan-C-T-TSKH-spring540x960-M

demo: $(STAMP)
	@test -d $(DEMO_INPUT) || $(PY) -m monst3r.datasets.synthetic --out $(DEMO_INPUT) --frames 24 --size 512x288 --seed 0
	@test -f $(SEARAFT).pth || test -f $(SEARAFT).safetensors || bash data/download_ckpt.sh flow || \
		echo "note: optical-flow weights unavailable; running without the flow loss"
	@FLOW=$$(test -f $(SEARAFT).pth || test -f $(SEARAFT).safetensors || echo "--flow_loss_weight 0"); \
		$(PY) demo.py --input $(DEMO_INPUT) --output_dir demo_tmp --seq_name synthetic $$FLOW $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) bench/bench_forward.py --config small --size 160 --batch 2 --device cpu

clean:
	rm -rf $(VENV) .pytest_cache
