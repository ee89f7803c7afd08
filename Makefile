# The two commands (see README): `make book` builds the book, `make test` runs every test.
# Both create the virtual environment on first use. torch is installed first and pinned,
# so nothing downstream can pull a CUDA build.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# MNIST: the loader reads $ODECORE_MNIST_DIR, then data/mnist/; point it at the shared copy when present.
ODECORE_MNIST_DIR ?= $(abspath $(wildcard ../shared/data/mnist))
export ODECORE_MNIST_DIR
JB := $(BIN)/jupyter-book build . -W -n --keep-going

.PHONY: book fresh-cache pdf test test-package test-package-core test-pool test-notebooks test-book test-browser test-pdf reproduce env clean

env: $(VENV)/.installed

# torch comes first through pip, which takes the CPU wheel; uv installs the rest against it in seconds
# (pip took about 50 s of CI's 6 minutes resolving and unpacking the same pinned versions).
# Which torch wheel pip takes comes from its configuration: this project's machines are set to the CPU build. From
# PyPI directly, Linux gets the CUDA build (gigabytes): there, `make env TORCH_INDEX=https://download.pytorch.org/whl/cpu`.
TORCH_INDEX ?=
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check \
	  $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple) torch==2.13.0 uv==0.13.9
	$(BIN)/uv pip install -q --python $(BIN)/python -e ".[book,test]"
	touch $@

# Executes every chapter from the committed results (no training) and writes _build/html.
book: env fresh-cache
	$(JB)
	touch _build/.inputs-stamp

# In `make test`, what reads the built book waits for the strict build (above); alone, each reads the last build.
AFTER_BOOK ?=
BUILT := $(if $(AFTER_BOOK),test-book)

# The execution cache keys a notebook by its code, so it cannot see a new record or a change in odecore:
# when any of them is newer than the last build, executed notebooks and parsed pages are thrown away.
# (The strict build runs the same check in its own recipe: as a prerequisite it could let make start a later job first.)
FRESH_CACHE = if [ -f _build/.inputs-stamp ] && [ -n "$$(find data/results data/checkpoints odecore -newer _build/.inputs-stamp -not -path '*/__pycache__/*' -print -quit)" ]; then \
	  echo "records or odecore changed since the last build: re-executing every chapter"; \
	  rm -rf _build/.jupyter_cache _build/.doctrees; fi
fresh-cache: $(BUILT)
	@$(FRESH_CACHE)

# The whole book as one PDF, printed offline by Chromium from the single-page build (same execution
# cache as `make book`): _build/pdf/book.pdf, then checked (tests/test_pdf.py).
pdf: env fresh-cache
	$(JB) --builder singlehtml
	$(BIN)/python tests/print_pdf.py $(PDF_FLAGS)
	$(BIN)/python -m pytest -rs tests/test_pdf.py

# Two jobs (CI has two cores): the package tests beside the notebooks, then the process-pool tests, the strict book
# build and the checks of the built book, which make takes in this order as a job frees. The pool tests go first,
# on the core the notebooks free: they are the longest job left, and behind the book build they ended last while
# the other core idled. The browser and PDF checks read the built book, so under AFTER_BOOK=1 they (and the cache
# check before the PDF) wait for the strict build, then take a core each (each its own Chromium and port).
test: env
	$(MAKE) -j2 --output-sync=target AFTER_BOOK=1 test-package-core test-notebooks test-pool test-book test-browser test-pdf

# Tests marked `book` need the built book; they run after it (test-browser, test-pdf).
test-package: test-package-core test-pool

test-package-core: env
	$(BIN)/python -m pytest tests -m "not book" --ignore=tests/test_parallel.py --durations=15

# The Ray process-pool tests (about two minutes, most of it starting and stopping clusters).
test-pool: env
	$(BIN)/python -m pytest tests/test_parallel.py -m "not book" --durations=5

# Every notebook in the smoke profile with training forced; results go to a throwaway folder.
test-notebooks: env
	scratch=$$(mktemp -d) && ODECORE_PROFILE=smoke ODECORE_RERUN=1 TQDM_DISABLE=1 \
	  ODECORE_RESULTS_DIR=$$scratch/results ODECORE_CHECKPOINT_DIR=$$scratch/checkpoints \
	  ODECORE_SCRATCH_DIR=$$scratch/scratch \
	  $(BIN)/python -m pytest --nbval-lax -p no:cacheprovider book/; rc=$$?; rm -rf $$scratch; exit $$rc

# The strict build from scratch (an incremental build can hide an earlier warning).
test-book: env
	@$(FRESH_CACHE)
	rm -rf _build/html _build/.doctrees
	$(JB) --all
	touch _build/.inputs-stamp

# Every page of the built book in headless Chromium with no network but the local server: no JS
# errors, math typeset, images loaded, links resolve; screenshots in _build/screenshots/.
# Needs Debian's chromium and chromium-driver (.ci/run installs them); without them it skips.
test-browser: env $(BUILT)
	$(BIN)/python -m pytest -rs tests/test_reader.py tests/test_browser.py

# `make pdf` inside `make test`: without Chromium (and CI unset) it says so and the check skips.
test-pdf: PDF_FLAGS = --if-browser
test-pdf: pdf

# Every chapter at the paper's settings (CUDA when present; resumable: run it again after an interruption).
CHAPTERS := adjoint mnist cnf latent_ode
reproduce: env
	for chapter in $(CHAPTERS); do $(BIN)/python -m odecore.experiments $$chapter --profile full || exit 1; done

clean:
	rm -rf _build
