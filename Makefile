# The one entry point for people and CI: make run | test | lint | bench
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-locust bench-slow soak fuzz docs venv clean deps-test

$(PY):
	@$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: on Debian run 'apt-get install python3-venv'"; exit 1; }
	$(PIP) install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml setup.py server/hopwire/telemetry/_otlp.c server/hopwire/telemetry/_context.c server/hopwire/http/_head.c
	@bash deploy/build-deps.sh $(PYTHON)
	$(PIP) install -q -e '.[test,lint]'
	@touch $(STAMP)

venv: $(STAMP)

# hopwire on :8080 with the demo backend on :9000. Ctrl-C stops both.
run: $(STAMP)
	@$(PY) bench/backend.py --port 9000 & backend=$$!; \
	trap 'kill $$backend 2>/dev/null' EXIT INT TERM; \
	echo "hopwire on http://127.0.0.1:8080/ -> demo backend on 127.0.0.1:9000 (Ctrl-C stops both)"; \
	$(VENV)/bin/hopwire --config deploy/demo.yml

deps-test: $(STAMP)
	@bash tests/install-deps.sh

test: deps-test
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check server tests bench
	$(VENV)/bin/ruff format --check server tests bench
	$(VENV)/bin/mypy

# the generated parts of docs/: the configuration reference and the error kinds
docs: $(STAMP)
	$(PY) -m tests.regen_docs

# coverage-guided fuzzing of the request path (atheris); findings become corpus files
FUZZ_SECONDS ?= 600
fuzz: $(STAMP)
	$(PY) -m tests.fuzz.run --seconds $(FUZZ_SECONDS)

bench: $(STAMP)
	@bash bench/install-deps.sh
	$(PIP) install -q -e '.[test,lint,bench]'
	$(PY) bench/run.py
	$(PY) bench/run.py --workers 2
	$(PY) bench/telemetry.py
	$(PY) bench/exporter.py
	$(PY) bench/otlp_transport.py
	$(PY) bench/tls.py
	$(PY) bench/h2.py
	$(PY) bench/grpc_cost.py
	$(PY) bench/middlewares.py
	$(PY) bench/live.py

# locust's realistic mix against hopwire and nginx; reports in bench/results/locust*
LOCUST_SECONDS ?= 30
LOCUST_ROUNDS ?= 3
bench-locust: $(STAMP)
	@bash bench/install-deps.sh
	$(PIP) install -q -e '.[test,lint,bench]'
	$(PY) bench/locust_run.py --seconds $(LOCUST_SECONDS) --rounds $(LOCUST_ROUNDS)

# slowhttptest's slow read, slowloris and slow body by the hundred, hopwire beside nginx
bench-slow: $(STAMP)
	@bash bench/install-deps.sh
	$(PY) bench/slowclients.py

# load while the dynamic file changes, SIGHUPs, worker kills and receiver restarts
SOAK_SECONDS ?= 300
soak: $(STAMP)
	@bash bench/install-deps.sh
	$(PY) bench/soak.py --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
