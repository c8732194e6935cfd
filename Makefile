# Two commands for a fresh machine: `make book` and `make test`. Both create .venv when absent.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.perlkit-installed
CHAPTERS := book/index.ipynb $(sort $(wildcard book/[0-9]*.ipynb))
# require.js and the ipywidgets HTML manager, from npm, served by the site itself (_config.yml: html_extra_path)
OFFLINE_JS := _build/offline-js

.PHONY: install book chapters html check-html test unit nbval lint dist results bench smoke gpu clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[book,test,dev]"
	@touch $(STAMP)

install: $(STAMP)

## make book: install, execute every chapter with papermill (mini profile), build the HTML with zero warnings
book: install chapters html

chapters: install
	$(BIN)/python -m perlkit.book execute $(CHAPTERS)

html: install $(OFFLINE_JS)/.installed
	$(BIN)/jupyter-book build . -W -n --keep-going

$(OFFLINE_JS)/.installed: perlkit/offline_js.py | $(STAMP)
	$(BIN)/python -m perlkit.offline_js $(OFFLINE_JS)

## make check-html: open every page of _build/html (make html first) in Debian's headless Chromium, offline, at 1280
## and 390 px; fail on console errors, missing assets, unrendered math or widgets, overflow; screenshots in _build/screens
check-html: install
	$(BIN)/python -m perlkit.htmlcheck _build/html --screens _build/screens

## make test: install, lint, unit tests, then nbval over the executed chapters
test: install lint unit nbval

lint: install
	$(BIN)/ruff check perlkit tests
	$(BIN)/ruff check --select F book  # chapters: undefined names and unused imports
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.citation-file-format CITATION.cff

unit: install
	$(BIN)/python -m pytest -q tests

nbval: install
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg $(CHAPTERS)

## make dist: the sdist and the wheel in dist/ (python -m build), checked with twine
dist: install
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

## make results: run (or resume) the full mini sweep behind the book into data/results (long; maintainers)
results: install
	$(BIN)/perlkit results --profile mini --ship

bench: install
	$(BIN)/perlkit bench --profile mini --json --ship

## make smoke: every method trains and evaluates end to end (paper profile, random ViT-B/16, synthetic data root in
## the CoOp layout) on CUDA when present, else the CPU; writes data/bench/paper-<cuda|cpu>-smoke.json
smoke: install
	$(BIN)/perlkit smoke --ship

## make gpu: the device checks to run whenever a GPU is lent (one script: smoke, then the paper bench), both shipped
gpu: install
	$(BIN)/perlkit smoke --device cuda --ship
	$(BIN)/perlkit bench --profile paper --device cuda --json --ship

clean:
	rm -rf _build dist
