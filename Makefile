# failcat: the two commands README.md documents, and a few helpers.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FAILCAT_DATA_DIR ?= ./.failcat

.PHONY: run test install install-dev lint format migration schema schema-check clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q -e sdk/python

run: install
	$(BIN)/failcat db upgrade
	$(BIN)/failcat serve --host 127.0.0.1 --port 8000

test: install-dev
	bash infra/scripts/test.sh

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Pre-release the schema is one initial migration, regenerated from the models.
migration:
	bash infra/scripts/regen_migration.sh

# The GraphQL SDL is a checked-in contract (schema.graphql); a test fails when it drifts.
schema:
	$(BIN)/python -m services.gateway.sdl

schema-check:
	$(BIN)/python -m services.gateway.sdl --check

clean:
	rm -rf $(FAILCAT_DATA_DIR)
