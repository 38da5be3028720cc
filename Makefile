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

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

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
