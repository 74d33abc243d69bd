# funclet: `make run` starts the platform with the examples deployed; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("funclet needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/funclet serve --examples examples

# The store, async, trigger and limit tests run again on PostgreSQL (the machine's
# server on 5432; each funclet gets a database of its own, dropped at the end).
# (The cluster, code-store and platform-process tests make PostgreSQL databases of their
# own in the first run.)
POSTGRES_TESTS := tests/test_functions_api.py tests/test_records.py tests/test_async.py \
	tests/test_async_crash.py tests/test_destinations.py tests/test_triggers.py \
	tests/test_limits.py tests/test_provisioned.py tests/test_console.py

# Two workers, a test file each at a time: most of the suite's time is spent waiting on
# instances, timers and brokers, and every test's funclet has its own port, data folder,
# database and host slot (bridge, subnet, nftables table). The OpenAPI fuzz runs on its
# own after them: under xdist schemathesis would not run its cases.
WORKERS ?= -n 2 --dist loadfile
FUZZ := tests/test_openapi_fuzz.py

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(WORKERS) --durations=20 \
		--ignore=$(FUZZ) tests
	$(BIN)/python -m pytest -q -p no:cacheprovider $(FUZZ)
	FUNCLET_TEST_DATABASE=postgresql $(BIN)/python -m pytest -q -p no:cacheprovider $(WORKERS) \
		$(POSTGRES_TESTS)

bench: $(STAMP)
	$(BIN)/python bench/bench.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src/funclet

clean:
	rm -rf $(VENV) .funclet
