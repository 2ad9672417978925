# The two entry points of the README. Both do their own set-up first (idempotent: seconds
# when nothing is left to do, ~15 min on a fresh 2-core machine because mmcv is compiled).
PY ?= .venv/bin/python
PYTEST_ARGS ?=
# `make test` runs the suite in two processes (pytest-xdist), one thread each (tests/conftest.py),
# one test file per process at a time (--dist loadfile): a file's trained model (a module
# fixture) is then trained once, not once per process; the longest files first, in the order
# tests/conftest.py gives them (--no-loadscope-reorder). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

.PHONY: setup demo test test-unit bench
setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest tests -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# the unit tests alone (no process started, no training): for a developer's edit-test loop
test-unit: setup
	$(PY) -m pytest tests -q -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) tools/analysis/benchmark_backbone.py
	$(PY) tools/analysis/benchmark.py
