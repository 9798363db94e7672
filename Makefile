# make test: the README's test command. make stress: scripts/stress.py (fuzz, SIGKILL resume, big pages).
PYTHON ?= $(shell test -x .venv/bin/python && echo .venv/bin/python || echo python)
STRESS_ARGS ?=

.PHONY: test stress

test:
	$(PYTHON) -m pytest -q

stress:
	nice $(PYTHON) scripts/stress.py $(STRESS_ARGS)
