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

demo: $(STAMP)
	$(PY) demo.py --output_dir demo_tmp

bench: $(STAMP)
	$(PY) bench/bench_forward.py --config small --size 160 --batch 2 --device cpu

clean:
	rm -rf $(VENV) .pytest_cache
