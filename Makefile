# Set-up and the two everyday jobs. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := 2.13.0

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# The local CPU build first: a bare torch requirement would pull a multi-GB CUDA build. It is named
	# again with the project: without it, pip 26's resolver replaced it by torch 2.14.1 and its CUDA
	# libraries (6.9 GB) while resolving the test extra (measured 2026-12-01); the venv's own pip is kept.
	$(BIN)/pip install --quiet torch==$(TORCH)
	$(BIN)/pip install --quiet -e ".[test]" torch==$(TORCH)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/merflow demo --out demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf demo .pytest_cache
