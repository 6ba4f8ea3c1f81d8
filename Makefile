# Two commands on a fresh machine: `make demo` (the main job on bundled data) and `make test`.
# Each creates .venv on first use (PyTorch's CPU build first, so pip never pulls a CUDA wheel)
# and reuses it afterwards.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tinylm-installed

.PHONY: install demo test test-slow clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py tinylm/tokenizer/_bpe_merge.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tinylm quickstart $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
