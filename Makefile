# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench mutation clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: anything looser would download a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/kiln train -c configs/digits_mlp.yaml

# The full suite in 2 processes (pytest-xdist), a test file per process at a time so that its module
# fixtures are built once: many tests wait on subprocesses and servers, so 2 processes nearly halve
# the time on CI's 2 cores. `make test TEST_WORKERS=auto` uses every core of a bigger machine.
TEST_WORKERS ?= 2
# One intra-op thread per test process (and the processes the tests start): the xdist workers
# already use every core, and torch's default of one thread per core in each of them made the
# suite 1.6x slower on 2 cores (18.7 against 11.4 minutes). Set OMP_NUM_THREADS to override.
TEST_THREADS ?= 1

test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$(TEST_THREADS)} $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/overhead.py

# Mutation testing of the core, by hand (slow on 2 cores; CI does not run it). The mutated files and
# the fast unit tests run against them are set in pyproject's [tool.mutmut]; one process, niced.
# `make mutation AREA=config` (or tasks, export.parity, ...) reruns one area's mutants, plain `make mutation`
# all of them, against the tests as they are now; scores and survivors are in docs/testing.md.
mutation: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt mutmut
	OMP_NUM_THREADS=1 nice -n 10 $(BIN)/mutmut run --max-children 1 'kiln.$(AREA)*'
	$(BIN)/python mutation/score.py

clean:
	rm -rf $(VENV) build *.egg-info
