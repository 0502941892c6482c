PYTHON ?= python3
TARGET ?= cortex-m55

.PHONY: setup demo test accuracy

setup:
	@bash scripts/setup.sh

demo: setup
	$(PYTHON) -m deploy.build --target $(TARGET)

test: setup
	$(PYTHON) -m pytest -q

accuracy: setup
	$(PYTHON) -m relax_passes.benchmark
