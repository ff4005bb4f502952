# Two commands set everything up: `make demo` and `make test`. Both create .venv on first use.
# `make docs` builds the documentation site into site/ (mkdocs-material, strict).
# `make bench` measures us against plain pyzmq (and Wrapyfi) and rewrites docs/benchmarks.md,
# carrier="shm" included (benchmarks/bench_shm.py, default and tuned: about a minute);
# `make bench-quick` is the under-two-minutes version (shm: default only, about 15 s), written to
# benchmarks/results/quick/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test docs bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps record what is installed; they are rebuilt when the packaging files change.
$(VENV)/.base: $(BIN)/python setup.cfg pyproject.toml constraints.txt
	$(PIP) -e ".[cli]"
	touch $@

# The test environment also gets the docs extra (tests/test_docs.py builds the site in strict mode)
# and the bench extra (make bench uses this environment; tests/test_bench_smoke.py runs bench-quick).
# tests/test_netns.py needs iproute2's `ip`: as root on a fresh machine (CI) it is installed here.
$(VENV)/.test: $(VENV)/.base
	command -v ip >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q iproute2) || true
	$(PIP) -e ".[test,torch,docs,cli,bench,typed,pydantic,zenoh,xarray,dask,zarr,pint,jax,shm]"
	touch $@

$(VENV)/.docs: $(VENV)/.base
	$(PIP) -e ".[docs]"
	touch $@

demo: $(VENV)/.base
	$(BIN)/python examples/demo.py

test: $(VENV)/.test
	$(BIN)/pytest

docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(VENV)/.test
	$(BIN)/python -m benchmarks.run

QUICK_RESULTS ?= benchmarks/results/quick
bench-quick: $(VENV)/.test
	$(BIN)/python -m benchmarks.run --quick --output-dir $(QUICK_RESULTS) --markdown $(QUICK_RESULTS)/benchmarks.md $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build site *.egg-info
