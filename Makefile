# Set-up and the everyday jobs. `make demo`, `make test` and `make test-fast` create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := 2.13.0

.PHONY: demo test test-fast install clean

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

# Two pytest workers, a test file each at a time (--dist loadfile: a file's module fixtures are built once).
# Most of the suite waits on subprocesses, servers and clusters, so two workers on CI's 2 cores took the
# whole suite from 1376 s to 769 s (798 tests, measured 2026-12-07); PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

# The unit tests alone (no Prefect flow or server, Dask, Ray, S3 server or CLI subprocess), under a minute:
# for development; `make test` (what CI runs) is the whole suite. One thread per library: on a busy machine
# OpenCV's and torch's thread pools spin against the other processes (tests/test_faces.py at load 8 on
# 2 cores: 61 s with their default threads, 6.5 s with one; measured 2026-12-01).
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 OPENCV_FOR_THREADS_NUM=1 $(BIN)/python -m pytest -q -m "not slow and not integration"

clean:
	rm -rf demo .pytest_cache
