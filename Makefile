# Two commands on a fresh machine: `make demo` (the main job on bundled data) and `make test`.
# Each creates .venv on first use (PyTorch's CPU build first, so pip never pulls a CUDA wheel)
# and reuses it afterwards.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tinylm-installed

.PHONY: install demo test test-slow bench-gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py tinylm/tokenizer/_bpe_merge.c tinylm/tokenizer/_bpe_encode.c
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

# On a machine with an NVIDIA GPU: the model and training benchmarks (tokens/s, MFU), the CUDA-only
# tests, including 2-GPU NCCL data parallelism when there are two GPUs. Output also lands in docs/results/gpu-*.txt.
bench-gpu: $(STAMP)
	$(PY) -c "import torch; assert torch.cuda.is_available(), 'no CUDA device (or a CPU-only torch in $(VENV))'"
	set -o pipefail; $(PY) benchmarks/bench_model.py --device cuda --batch-size 64 --bf16 | tee docs/results/gpu-bench_model.txt
	set -o pipefail; $(PY) benchmarks/bench_train.py --device cuda --bf16 --compile --batch-size 128 --steps 50 --warmup 10 | tee docs/results/gpu-bench_train.txt
	set -o pipefail; $(PY) -m pytest -m gpu -q | tee docs/results/gpu-tests.txt

clean:
	rm -rf $(VENV) build *.egg-info
