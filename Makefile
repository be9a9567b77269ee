# Two commands on a fresh machine:  `make serve`  and  `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench install lock lock-upgrade clean

DEPS := $(VENV)/.locked-deps
LOCAL_PACKAGES := dicomweb-core dicomweb-stow-svc dicomweb-wado-svc dicomweb-operator
# One resolution for every platform the lock may be installed on (Linux images, macOS laptops).
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(foreach p,$(LOCAL_PACKAGES),--no-emit-package $(p))

# The third-party dependencies come only from the hash-checked lock (requirements/dev.txt);
# the packages' own pyproject.toml ranges say what they accept, the lock what we tested.
$(DEPS): requirements/dev.txt
	@echo "make: creating $(VENV)/ (if missing)"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "make: installing the locked dependencies and test tools (requirements/dev.txt, hash-checked; about a minute on a fresh machine)"
	@$(VENV)/bin/python -m pip install -q --require-hashes -r requirements/dev.txt
	@touch $(DEPS)

$(STAMP): $(DEPS) packages/dicomweb-core/pyproject.toml packages/stow-svc/pyproject.toml \
          packages/wado-svc/pyproject.toml packages/operator/pyproject.toml
	@echo "make: installing the four packages into $(VENV)/ (editable, dependencies from the lock only)"
	@$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e packages/dicomweb-core \
	    -e packages/stow-svc -e packages/wado-svc -e packages/operator
	@echo "make: checking that the lock satisfies every declared dependency (run make lock if not)"
	@$(VENV)/bin/pip check
	@touch $(STAMP)
	@echo "make: $(VENV)/ is ready"

## Refresh the locks (requirements/*.txt) from the packages' pyproject.toml ranges and
## requirements-dev.txt, keeping every pin that still fits; `make lock-upgrade` takes the newest.
## The image locks are constrained by dev.txt, so all pin the same versions. Needs PyPI.
lock: $(DEPS)
	$(UV_COMPILE) $(UV_FLAGS) requirements/dev.in -o requirements/dev.txt
	@for image in core stow wado operator; do \
	    echo "make lock: requirements/$$image.txt (constrained by requirements/dev.txt)"; \
	    $(UV_COMPILE) $(UV_FLAGS) -c requirements/dev.txt requirements/$$image.in -o requirements/$$image.txt || exit 1; \
	done

lock-upgrade:
	$(MAKE) lock UV_FLAGS=--upgrade

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
