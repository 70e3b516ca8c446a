VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint types unit demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check bulkruns tests benchmarks
	$(VENV)/bin/ruff format --check bulkruns tests benchmarks

types: $(STAMP)
	$(VENV)/bin/mypy

# an absolute data file, so that subprocesses started in other folders report to it too
unit: $(STAMP)
	COVERAGE_FILE=$(CURDIR)/.coverage $(PY) -m pytest --cov --cov-report=term

test: lint types unit

demo: $(STAMP)
	$(PY) -m bulkruns.demo

# the AWS peer of "The limit unknown" needs botocore, an extra of its own: make test does not
bench: $(STAMP)
	$(PY) -c 'from botocore.retries.standard import ThrottlingStatusCodeChecker' 2>/dev/null \
		|| $(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov
