# Two commands on a fresh machine: `make run` (the demo, end to end) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KAPPA := $(VENV)/bin/kappa-agents
STAMP := $(VENV)/.installed
QUIX_VENV := bench/.venv-quix
QUIX_STAMP := $(QUIX_VENV)/.installed
EVENTS ?= 1000

.PHONY: install run graph test test-fast bench broker broker-stop topics worker check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## the fraud/compliance demo, or EXAMPLE=orchestrator-worker|hierarchical|market|blackboard
ifdef EXAMPLE
	$(KAPPA) example $(EXAMPLE)
else
	$(KAPPA) demo --events $(EVENTS)
endif

graph: $(STAMP)  ## the wiring as a picture: topology.dot and topology.svg (TOPOLOGY=examples/market.yaml for another)
	$(KAPPA) topology graph $(TOPOLOGY) --out $(basename $(or $(TOPOLOGY),topology.yaml)).svg

# End-to-end tests mostly wait (group joins, simulated model latency), so three
# processes, each with its own embedded broker, share the 2 cores: ~4 min instead of ~10.
TEST_PROCS ?= 3

test: $(STAMP)  ## the whole suite, end-to-end tests through the real broker included
	$(PY) -m pytest -q -n $(TEST_PROCS) --dist loadfile

test-fast: $(STAMP)  ## unit tests only
	$(PY) -m pytest -q -m "not e2e"

# quixstreams pins an older confluent-kafka than the project's: its bench row gets a venv of its own.
$(QUIX_STAMP): bench/quix-requirements.txt
	rm -rf $(QUIX_VENV)
	$(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/python -m pip install -q -r bench/quix-requirements.txt
	touch $(QUIX_STAMP)

bench: $(STAMP)  ## raw confluent-kafka loop vs. Kappa Agents vs. default faust vs. quixstreams; writes bench/results.json
	-$(MAKE) --no-print-directory $(QUIX_STAMP)  # without it (no PyPI) the quixstreams row is skipped
	$(PY) -m bench.run

broker: $(STAMP)
	$(KAPPA) broker start

broker-stop: $(STAMP)
	$(KAPPA) broker stop

topics: $(STAMP)
	$(KAPPA) topics apply

worker: $(STAMP)
	$(KAPPA) worker

check: $(STAMP)
	$(KAPPA) topology check

clean:
	-$(KAPPA) broker stop
	rm -rf .kappa
