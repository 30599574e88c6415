# Two commands on a fresh machine: `make run` (set up + the demo chain), `make test`.
VENV   ?= .venv
BIN    := $(VENV)/bin
PARAMS ?= params/default.yaml
STAMP  := $(VENV)/.qckit-setup-done

.PHONY: setup run lint test lab bench

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

run: setup
	$(BIN)/qckit run -p $(PARAMS)

lint: setup
	$(BIN)/ruff check qckit tests benchmarks notebooks

test: setup lint
	$(BIN)/python -m pytest -q

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks --MappingKernelManager.default_kernel_name=qckit

bench: setup
	@for b in benchmarks/[a-z]*.py; do \
	  name=$$(basename $$b .py); \
	  case $$name in common|show|realdata) continue;; esac; \
	  echo "== $$name"; $(BIN)/python -m benchmarks.$$name || echo "benchmark $$name failed"; \
	done
	$(BIN)/python -m benchmarks.show
