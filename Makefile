# The two entry points of the README. Both do their own set-up first (idempotent: seconds
# when nothing is left to do, ~15 min on a fresh 2-core machine because mmcv is compiled).
PY ?= .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit bench
setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

# the unit tests alone (no process started, no training): for a developer's edit-test loop
test-unit: setup
	$(PY) -m pytest tests -q -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) tools/analysis/benchmark_backbone.py
	$(PY) tools/analysis/benchmark.py
