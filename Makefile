# assetline: `make demo` and `make test` work on a fresh clone with Python 3.11+.
# Both create .venv/ here, install the project, and pull the pinned models.

ifndef PYTHON
PYTHON := $(shell for p in python3 python3.13 python3.12 python3.11; do $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
endif
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)
	$(BIN)/assetline models pull

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "assetline needs Python 3.11 or newer"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip check
	touch $(STAMP)

demo: install
	$(BIN)/assetline demo --out out --inputs demo-inputs

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/bench_image.py

clean:
	rm -rf out demo-inputs benchmarks/work .pytest_cache
