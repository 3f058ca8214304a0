# One-command set-up and run. `make demo` and `make test` each create the virtual environment
# and install the project first (idempotent), then run. Only `make test` (and `.ci/run`) may
# touch the system: it installs Debian's chromium for the browser tests when run as root.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH ?= torch==2.13.0
# Where PyTorch comes from. A wheel that pip finds locally without any index (its find-links,
# e.g. the project machines' CPU wheel) is used as it is and no other host is contacted; otherwise
# pip adds this extra index, whose CPU build wins over PyPI's (a multi-GB CUDA build on Linux).
# For a GPU: `make install TORCH_INDEX=https://download.pytorch.org/whl/cu128` (the CUDA 12.8
# build; a TORCH_INDEX given on the command line is always used), or TORCH_INDEX= for PyPI's own.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
ifeq ($(origin TORCH_INDEX),command line)
TORCH_LOCAL_PROBE := false
else
TORCH_LOCAL_PROBE := $(BIN)/python -m pip install --quiet --dry-run --no-index --no-deps "$(TORCH)" >/dev/null 2>&1
endif
TORCH_EXTRA := $(if $(strip $(TORCH_INDEX)),--extra-index-url $(TORCH_INDEX))
PYTEST_ARGS ?=

.PHONY: install demo test browser lint bench figures clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if $(TORCH_LOCAL_PROBE); then $(BIN)/python -m pip install --quiet "$(TORCH)"; \
	else $(BIN)/python -m pip install --quiet $(TORCH_EXTRA) "$(TORCH)"; fi
	$(BIN)/python -m pip install --quiet -e ".[test,flows]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/landslide demo --out out/demo.zarr --overwrite

# Debian's chromium for the web-map browser tests, only when it is missing and we are root with
# apt; otherwise those tests skip (and fail under CI=1, as .ci/run sets).
browser:
	@if command -v chromium >/dev/null 2>&1 || [ -n "$$LANDSLIDE_CHROMIUM" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests (apt-get)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium not installed: the browser tests will skip (fail under CI=1)"; \
	else echo "no chromium: the browser tests will skip (fail under CI=1); apt-get install chromium"; fi

test: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check pipeline flows tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.run

# every picture in docs/img, from the shipped checkpoint (the web map needs chromium)
figures: $(STAMP) browser
	$(BIN)/python -m pipeline.figures

clean:
	rm -rf out .pytest_cache .hypothesis
