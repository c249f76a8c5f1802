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

# --- vehicle agent (issue 5) ---
.PHONY: faults bench-swap bench-agent
# Power-cut (kill -9) and link-fault campaign; TRIALS=500 for the full one.
faults: $(STAMP)
	nice $(BIN)/python bench/faults.py --trials $${TRIALS:-20}

# Hot swap under load: latency steady vs during swaps, failed requests, plain onnxruntime alongside.
bench-swap: $(STAMP)
	nice $(BIN)/python bench/swap_bench.py

# Footprint: peak RSS and CPU of the agent idle / updating / serving.
bench-agent: $(STAMP)
	nice $(BIN)/python bench/agent_footprint.py
