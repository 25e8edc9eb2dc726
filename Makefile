# The two commands of the README. Each sets up what it needs on a fresh Debian machine.
.PHONY: demo test setup micropython test-cpython test-micropython lint

VENV := .venv
PY := $(VENV)/bin/python
MICROPYTHON := .cache/micropython-1.25.0/bin/micropython

demo: setup
	$(PY) -m spoolbus_host.cli demo

test: setup
	bash scripts/test.sh

setup:
	bash scripts/setup.sh

micropython:
	bash scripts/build-micropython.sh

lint:
	$(VENV)/bin/ruff check runtime host_tools tests bench
