# pixelcnn-course: `make lab` to learn, `make test` to check everything.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export TQDM_DISABLE ?= 1
# `make test` on a busy shared CPU: idle OpenMP threads must yield instead of spinning. Not for timing
# (benchmarks, lessons): sleeping threads make the many tiny operations of cached sampling 3x slower.
TEST_ENV := OMP_WAIT_POLICY=PASSIVE

.PHONY: setup lab demo pretrained lint format test course site exercises bench bench-precision mutation mutation-solutions hub-rehearsal clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || { \
	  echo "pixelcnn-course needs Python 3.10 or newer, but '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing); run 'make PYTHON=python3.12 lab' (or any 3.10+ interpreter)."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# JupyterLab rooted at the repository (notebooks/, exercises/, solutions/, course_lib/ all in reach), lesson 00 open
lab: setup
	TQDM_DISABLE= $(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" notebooks/00_start_here.ipynb

demo: setup
	TQDM_DISABLE= $(BIN)/python -m course_lib train

# retrain the shipped pretrained models (course_lib/weights) from scratch; see README "Pretrained models"
pretrained: setup
	TQDM_DISABLE= $(BIN)/python -m tools.pretrain

# ruff (configured in pyproject.toml): lint and check the formatting; `make format` rewrites
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# lint, unit tests, every solution notebook under nbval in fast mode, and every lesson too: as a student
# account from a non-editable install where the tests run as root, else in place (tests/test_classroom.py)
test: setup lint
	$(TEST_ENV) COURSE_FAST=1 $(BIN)/python -m pytest -q tests solutions --nbval-lax --nbval-current-env

# re-execute every lesson in full mode and store its outputs (what a learner sees on the web)
course: setup
	$(BIN)/python -m tools.build_course --html

# the course website from the committed outputs (nothing re-executed) into site/_build/html; works offline and
# from any folder: serve it with `python3 -m http.server --directory site/_build/html 8000`
site: setup
	$(BIN)/python -m tools.build_site

# regenerate the student notebooks in exercises/ from the solved ones in solutions/
exercises: setup
	$(BIN)/python -m tools.make_exercises

# speed: naive vs cached sampling, training throughput (fp32 eager vs the fast path); tables + JSON
bench: setup
	$(BIN)/python -m benchmarks.sampling --full-naive 64 --busy
	$(BIN)/python -m benchmarks.training

# quality: bf16 autocast against fp32 on the same run (about 8 minutes on a 2-core CPU)
bench-precision: setup
	$(BIN)/python -m benchmarks.precision

# test strength: plausible one-line bugs planted in each course_lib module, one at a time; how many
# do the unit tests catch? (about an hour on a 2-core CPU; MODULES="masks data" for some modules)
mutation: setup
	$(BIN)/python -m tools.mutate $(MODULES)

# check strength: plausible one-line mistakes planted in each task's reference solution (solutions/), one at
# a time; how many do the exercise checks catch, and with which message? Also runs every unmutated reference
# 20 times on fresh random inputs (no false failure allowed). LESSONS="01 02" for some lessons; JOBS=2.
mutation-solutions: setup
	$(BIN)/python -m tools.mutate_solutions --repeat 20 --fail-under 90 --jobs $(or $(JOBS),1) $(if $(LESSONS),--lessons $(LESSONS))

# the course in a real JupyterHub classroom on 127.0.0.1 (as root; needs Node and npm): STUDENTS (default 3)
# Unix users run lesson 00 at once in their own servers, hand in exercise 01 and are graded; JSON=FILE for timings
hub-rehearsal: setup
	$(BIN)/python -m tools.hub_rehearsal --students $(or $(STUDENTS),3) $(if $(JSON),--json $(JSON))

clean:
	rm -rf runs .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
