# Set-up and checks. `make test` and `make demo` work on a fresh machine that has only Python.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench system-deps npm-peers clean

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
	@# zbar-tools: zbarimg, the real QR reader the unit-label tests decode the PNG preview with.
	@if ! command -v zbarimg >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zbar-tools >/dev/null; \
		else \
			echo "note: zbarimg (zbar-tools) is missing and cannot be installed here; the label QR tests will skip"; \
		fi; \
	fi

# Real-peer packages for the tests (Particle's JavaScript API client); without them those tests skip.
npm-peers:
	@if [ -f .cache/npm/node_modules/particle-api-js/package.json ]; then :; \
	elif command -v npm >/dev/null 2>&1; then \
		npm install --prefix .cache/npm --no-audit --no-fund --silent particle-api-js@12 \
			|| echo "note: particle-api-js could not be installed; its peer test will skip"; \
	else \
		echo "note: npm is missing; the particle-api-js peer test will skip"; \
	fi
	@# Particle's own platform table (what particle-usb finds boards by): the family table is checked against it.
	@if [ -f .cache/npm/node_modules/@particle/device-constants/package.json ]; then :; \
	elif command -v npm >/dev/null 2>&1; then \
		npm install --prefix .cache/npm --no-audit --no-fund --silent @particle/device-constants@4 \
			|| echo "note: @particle/device-constants could not be installed; its comparison test will skip"; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy firmware_tools station

pytest: $(STAMP) system-deps npm-peers
	$(VENV)/bin/pytest -q -n 2

test: lint typecheck pytest

demo: $(STAMP)
	$(VENV)/bin/station demo

# Every bench script in turn (bench/_*.py are shared helpers, not benchmarks). Several minutes:
# the line benchmarks run simulated boards in real time. Results table: bench/README.md.
bench: $(STAMP)
	@for f in bench/[!_]*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
