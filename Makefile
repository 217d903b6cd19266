# Two commands do everything:  `make lab` (set up, open the tutorials)  and  `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup lab demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, pinned: an unpinned torch pulls gigabytes of CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,he,ray]'
	touch $(STAMP)

setup: $(STAMP)

lab: setup
	# as root (a container, say) Jupyter refuses to start without --allow-root
	$(BIN)/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/

demo: setup
	$(BIN)/python -m ppdl_nb.demo

test: setup
	bash .ci/browser-deps.sh
	$(BIN)/ruff check ppdl_nb magics tests benchmarks
	$(BIN)/python -m pytest -q --durations=15 tests
	$(BIN)/python -m pytest -q --nbval --nbval-sanitize-with notebooks/sanitize.cfg notebooks
	# again, the tutorials with exercises, their solutions injected: the checks are tested
	PPDL_NB_SOLUTIONS=1 $(BIN)/python -m pytest -q --nbval-lax \
		$$(grep -l '"exercise"' notebooks/*.ipynb)

lint: setup
	$(BIN)/ruff check ppdl_nb magics tests benchmarks

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
