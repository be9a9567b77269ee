# Two commands on a fresh machine:  `make serve`  and  `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench install clean

$(STAMP): packages/dicomweb-core/pyproject.toml packages/stow-svc/pyproject.toml \
          packages/wado-svc/pyproject.toml packages/operator/pyproject.toml requirements-dev.txt
	@echo "make: creating $(VENV)/ (if missing)"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "make: upgrading pip"
	@$(VENV)/bin/pip install -q --upgrade pip
	@echo "make: installing the four packages and the test tools into $(VENV)/ (about a minute on a fresh machine)"
	@$(VENV)/bin/pip install -q -e packages/dicomweb-core -e packages/stow-svc -e packages/wado-svc \
	    -e packages/operator -r requirements-dev.txt
	@touch $(STAMP)
	@echo "make: $(VENV)/ is ready"

install: $(STAMP)

## Run the embedded server (STOW + WADO + QIDO, local folder + SQLite) on 127.0.0.1:8080.
serve: $(STAMP)
	$(VENV)/bin/dicomweb serve --host 127.0.0.1 --port 8080 --data-dir ./dicomweb-data

## Run the whole test suite (installs Orthanc if missing, starts its own S3-compatible server and
## Orthanc; uses PostgreSQL on 127.0.0.1:5432).
test: $(STAMP)
	@./scripts/test-prereqs
	@echo "make: ruff"
	$(VENV)/bin/ruff check packages tests benchmarks
	@echo "make: mypy --strict"
	$(VENV)/bin/mypy
	@echo "make: pytest (the slowest 15 tests are listed at the end)"
	$(VENV)/bin/python -m pytest --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check packages tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
