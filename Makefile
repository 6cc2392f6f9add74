# DynBench. `make test` and `make bench` create ./.venv and install the project on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch pair known to import together here (they come from this machine's disk); override on other machines.
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
JOBS ?= 2

.PHONY: install test test-all bench bench-perf tables clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PAIR) -e '.[dev]'
	$(PY) -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $@

# Fast tests (slow and perf markers left out); real-data tests run when $$DYNBENCH_DATA holds the files.
test: install
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: check tests/ and the -m expression"; fi; exit $$rc

test-all: install
	$(PY) -m pytest -m "not perf" $(PYTEST_ARGS)

# The quick suite, then the leaderboards.
bench: install
	$(PY) -m bench suite quick --jobs $(JOBS)
	$(MAKE) --no-print-directory tables

# pytest-benchmark performance targets (data pipeline, gate overhead, latency).
bench-perf: install
	$(PY) -m pytest -m perf --benchmark-enable $(PYTEST_ARGS)

tables: install
	$(PY) -m bench tables

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build *.egg-info
