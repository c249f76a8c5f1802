# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install protos clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "squeeze-ota needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ota demo

test: $(STAMP)
	$(BIN)/python -m pytest

# Regenerate the committed gRPC stubs from protos/ (tests/test_protos.py fails when they are stale).
protos: $(STAMP)
	$(BIN)/python -m ota.protogen

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Simulator benchmark: 1M-vehicle run time (median), the ready scenarios' reports, and the
# emulation check with 20 real agents (root; skipped with the reason otherwise).
# Updates the generated block of docs/simulator.md and its plots in docs/img/.
.PHONY: bench-sim
bench-sim: $(STAMP)
	nice $(BIN)/python bench/sim_bench.py --update-docs
