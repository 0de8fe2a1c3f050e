#!/usr/bin/env bash
# benchmarks/gpu_check.py on the GPU machine (the device tool; README "GPU check"): the image's
# own torch and transformers, plus the wheels and tokenizer `make gpu-carry` put in .gpu/.
# Writes gpu_check.json and gpu_check.log to $OUT (the device tool's folder), else runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
site=/tmp/ovmllm-site
if compgen -G ".gpu/wheels/*.whl" >/dev/null; then
    python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .gpu/wheels/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
# nothing outside the machine can be reached: no hub lookups that would wait for a timeout
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
out="${OUT:-runs}"
mkdir -p "$out"
PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out "$out/gpu_check.json" \
    --tokenizer .gpu/tokenizer "$@" 2>&1 | tee "$out/gpu_check.log"
