# The two commands of the README, plus the checks CI runs.
PYTHON ?= python3
# Tests mostly wait on brokers (outages, rebalances): two workers, one test file each at a time.
TEST_WORKERS ?= 2
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean

$(BIN)/contactflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

## The main job: broker up, topics applied, a sample of all five channels produced and shown.
demo: $(BIN)/contactflow
	$(BIN)/contactflow demo

## The tests: starts a throwaway PostgreSQL and a real Kafka broker, runs pytest, stops both.
test: $(BIN)/contactflow
	PATH="$(abspath $(BIN)):$$PATH" infra/with-test-services.sh \
		$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(BIN)/contactflow
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
