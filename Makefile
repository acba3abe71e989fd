# Two entry points for a fresh clone: `make train` (main job, offline default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.keras_wreg_installed

.PHONY: train test docs install clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(VENV)/bin/keras-wreg train $(ARGS)

# two pytest workers: the suite took 643 s on an idle 2-core machine (955 s with --dist load;
# serially, CI took 1,386 s with install and docs); `make test PYTEST_ARGS=` runs it serially
PYTEST_ARGS ?= -n 2 --dist worksteal

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

docs: $(STAMP)  # the documentation site (mkdocs-material + mkdocstrings) in site/
	$(PY) -m pip install --quiet -e ".[docs]"
	$(PY) docs/gen_pages.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) runs .pytest_cache site
