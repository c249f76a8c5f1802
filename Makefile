# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install protos clean lint

# What `make lint` checks: ruff (check + format) on the whole tree; mypy on every package,
# testkit and bench (tests/ is not type-checked).
LINT_PATHS ?= .
TYPE_PATHS ?= server otawire ota vehicle_agent modelpack simulator testkit bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "squeeze-ota needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ota demo

# Two pytest-xdist workers (PYTEST_WORKERS=0: one process): most slow tests wait on gRPC,
# shaped links or agent processes; tests marked `alone` still run by themselves (tests/conftest.py).
PYTEST_WORKERS ?= 2
test: lint browser
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal

# Lint first, so CI fails fast on a style or type error (tool versions pinned in pyproject).
lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy $(TYPE_PATHS)

# The dashboard's tests drive Debian's chromium through Playwright (never `playwright install`,
# which would download a browser of its own). Installed here when missing and we are root (CI);
# elsewhere those tests skip and say why.
.PHONY: browser
browser:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Regenerate the committed gRPC stubs from protos/ (tests/test_protos.py fails when they are stale).
protos: $(STAMP)
	$(BIN)/python -m otawire.protogen

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# The model zoo next to the paper's figures (sizes, zstd, ORT latency); writes bench/out/zoo.md.
bench-zoo: $(STAMP)
	nice $(BIN)/python bench/zoo_bench.py

# Transfer benchmark: our codecs vs zstd --patch-from, bsdiff, xdelta3, ZipNN on the
# same model pairs, in one run. Installs the Debian tools and the `bench` extra
# (torch==2.13.0 CPU first, so zipnn does not pull a CUDA build) if missing.
BENCH_TRANSFER_ARGS ?= --repeat 3 --markdown bench/out/transfer.md
.PHONY: bench-transfer
bench-transfer: $(STAMP)
	@for t in zstd bsdiff xdelta3 /usr/bin/time; do command -v $$t >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zstd bsdiff xdelta3 time; break; }; done
	@$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	@$(BIN)/python -c 'import zipnn' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[bench]'
	nice $(BIN)/python bench/transfer_bench.py $(BENCH_TRANSFER_ARGS)
# Simulator benchmark: 1M-vehicle run time (median), the ready scenarios' reports, and the
# emulation check with 20 real agents (root; skipped with the reason otherwise).
# Updates the generated block of docs/simulator.md and its plots in docs/img/.
.PHONY: bench-sim
bench-sim: $(STAMP)
	nice $(BIN)/python bench/sim_bench.py --agents 0 --update-docs
# The emulation check with real agents (root; twice, for the real-vs-real noise floor).
.PHONY: bench-emulation
bench-emulation: $(STAMP)
	nice $(BIN)/python bench/sim_bench.py --only-emulation --agents $(or $(AGENTS),20) --update-docs

# Load: 1,000 and 10,000 connected lite vehicles (10 % on slow links) against the asyncio
# registry and a bare gRPC peer; check-ins/s with 1, 2, 4 worker processes (issues 6, 14).
.PHONY: bench-load bench-checkin-profile
bench-load: $(STAMP)
	nice $(BIN)/python bench/load_bench.py --agents $(or $(AGENTS),1000,10000)

# Where the registry's time goes in one check-in, SQLite and PostgreSQL (cProfile).
bench-checkin-profile: $(STAMP)
	nice $(BIN)/python bench/checkin_profile.py
	nice $(BIN)/python bench/checkin_profile.py --db postgresql://postgres@127.0.0.1:5432/test

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
# Registry scale-out (issue 9): check-ins/s and p99 with 1 vs 3 replicas sharing PostgreSQL,
# beside the embedded SQLite registry. Needs PostgreSQL (OTA_TEST_PG_DSN, default
# postgresql://postgres@127.0.0.1:5432/test).
.PHONY: bench-replicas
bench-replicas: $(STAMP)
	nice $(BIN)/python bench/replicas_bench.py --markdown bench/out/replicas.md

# The agent on aarch64 as a car's image holds it (issue 17; slow, opt-in): an arm64 Debian
# bookworm root (debootstrap, cached in build/embedded-arm64) with the lean install, run
# under qemu-user against a registry on this host (tests/embedded/test_arm64.py). Installs
# debootstrap, qemu-user-static and binfmt-support when missing and we are root, and
# registers qemu-aarch64 with binfmt_misc.
.PHONY: embedded-arm64
embedded-arm64: $(STAMP)
	@for t in debootstrap qemu-aarch64-static update-binfmts; do command -v $$t >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap qemu-user-static binfmt-support; break; }; done
	@[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || [ "$$(id -u)" != 0 ] || { mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64; }
	OTA_EMBEDDED_ARM64=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/embedded/test_arm64.py
