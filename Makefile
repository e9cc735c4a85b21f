# Two commands on a fresh clone:
#   make demo   set up .venv and run the demo (dense vs Sparse CLIP on the procedural world -> demo_out/)
#   make test   set up .venv and run the test suite (what CI runs)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow setup lint clean docs-check mutants

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/sparseclip demo --out demo_out

# the main suite (minutes on 2 cores); the tests marked `slow` (the documented evaluation walk-through at its
# full size, the emoji example end to end) are CI's second step: `make test-slow`
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -m "not slow" --durations=15

test-slow: $(STAMP)
	$(BIN)/pytest -m slow --durations=15

# mutation testing of the modules whose numbers the docs report (docs/mutants.md): hours on 2 shared cores, not
# part of `make test`; writes docs/mutants/report.json and regenerates the tables of docs/mutants.md
mutants: $(STAMP)
	$(BIN)/pip install -q "mutmut==3.8.1"
	$(BIN)/python -m sparseclip.experiments.mutants
	$(BIN)/python -m sparseclip.experiments.doc_blocks docs/mutants.md

docs-check: $(STAMP)
	$(BIN)/python -m sparseclip.experiments.doc_blocks --check

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf demo_out runs .pytest_cache
