# Set-up and checks. `make test` and `make demo` work on a fresh machine that has only Python.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests use as real protocol peers (lrzsz: sb/rb for YModem).
system-deps:
	@if ! command -v sb >/dev/null 2>&1 || ! command -v rb >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lrzsz >/dev/null; \
		else \
			echo "note: lrzsz (sb/rb) is missing and cannot be installed here; its tests will skip"; \
		fi; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy firmware_tools station

pytest: $(STAMP) system-deps
	$(VENV)/bin/pytest -q -n 2

test: lint typecheck pytest

demo: $(STAMP)
	$(VENV)/bin/station demo

bench: $(STAMP)
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
