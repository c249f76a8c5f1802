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

# Load: 1,000 concurrent lite agents against one registry process, and a bare gRPC peer (issue 6).
.PHONY: bench-load
bench-load: $(STAMP)
	nice $(BIN)/python bench/load_bench.py --agents $(or $(AGENTS),1000)
