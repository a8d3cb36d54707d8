# mmlavit: `make test` sets up .venv on first use (tools/setup_env.sh) and runs the suite (the 25 slowest tests
# listed at the end); `make test-quick` leaves out the tests marked slow; `make lint` runs ruff.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: install lint test test-quick flops demo demo-seg clean-venv

$(STAMP): requirements.txt pyproject.toml tools/setup_env.sh
	PYTHON=$(PYTHON) bash tools/setup_env.sh
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q --durations=25 tests

test-quick: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow" tests

flops: $(STAMP)
	$(VENV)/bin/python tools/get_flops.py

demo: $(STAMP)
	$(VENV)/bin/python tools/demo.py

demo-seg: $(STAMP)
	$(VENV)/bin/python tools/demo_seg.py

clean-venv:
	rm -rf $(VENV)
