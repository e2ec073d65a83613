# pixelcnn-course: `make lab` to learn, `make test` to check everything.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export TQDM_DISABLE ?= 1

.PHONY: setup lab demo test test-fast clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[notebooks,test]"
	touch $(STAMP)

lab: setup
	TQDM_DISABLE= $(BIN)/jupyter lab notebooks/

demo: setup
	TQDM_DISABLE= $(BIN)/python -m course_lib train

test: setup
	COURSE_FAST=1 $(BIN)/python -m pytest -q

clean:
	rm -rf runs .pytest_cache
