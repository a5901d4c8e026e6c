# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# CPU build of torch, taken from local disk where present; pinned so pip never pulls CUDA.
TORCH_PIN ?= torch==2.13.0

.PHONY: install demo test test-slow test-all lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# DeepSpeed for the slow suite's CPU ZeRO-2/3 runs; built against the pinned CPU torch above
# (no build isolation, which would pull a CUDA torch into the build environment).
DS_STAMP := $(VENV)/.deepspeed
$(DS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --no-build-isolation -e ".[deepspeed]"
	touch $(DS_STAMP)

demo: $(STAMP)
	$(VENV)/bin/cogumi demo

# Headless Chromium renders the run report in the tests (Debian package `chromium`, installed
# once with apt-get; sudo only when not root).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

test: $(STAMP) $(CHROMIUM)
	$(PY) -m pytest -m "not slow and not gpu"

test-slow: $(STAMP) $(DS_STAMP)
	$(PY) -m pytest -m "slow and not gpu"

bench: $(STAMP)
	$(PY) benchmarks/dedup.py --out bench-dedup.json
	$(PY) benchmarks/train.py --steps 60 --batch 16

lint: $(STAMP)
	$(VENV)/bin/ruff check cogumi_ray tests benchmarks

clean:
	rm -rf runs .pytest_cache
