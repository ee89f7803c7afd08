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

.PHONY: book test test-package test-notebooks test-book reproduce env clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[book,test]"
	touch $@

# Executes every chapter from the committed results (no training) and writes _build/html.
book: env
	$(JB)

test: test-package test-notebooks test-book

test-package: env
	$(BIN)/python -m pytest tests

# Every notebook in the smoke profile with training forced; results go to a throwaway folder.
test-notebooks: env
	scratch=$$(mktemp -d) && ODECORE_PROFILE=smoke ODECORE_RERUN=1 TQDM_DISABLE=1 \
	  ODECORE_RESULTS_DIR=$$scratch/results ODECORE_CHECKPOINT_DIR=$$scratch/checkpoints \
	  ODECORE_SCRATCH_DIR=$$scratch/scratch \
	  $(BIN)/python -m pytest --nbval-lax -p no:cacheprovider book/; rc=$$?; rm -rf $$scratch; exit $$rc

# The strict build from scratch (an incremental build can hide an earlier warning).
test-book: env
	rm -rf _build/html _build/.doctrees
	$(JB) --all

# Every chapter at the paper's settings (CUDA when present; resumable: run it again after an interruption).
CHAPTERS := adjoint mnist cnf latent_ode
reproduce: env
	for chapter in $(CHAPTERS); do $(BIN)/python -m odecore.experiments.$$chapter --profile full || exit 1; done

clean:
	rm -rf _build
