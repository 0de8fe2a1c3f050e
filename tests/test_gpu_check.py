"""benchmarks/gpu_check.py: its CPU dry run exercises every part that can run without a GPU,
records the GPU-only ones as skipped with a reason, and keeps going past a broken part; its MFU
counts the parameters of the real shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REAL_DATA

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402

TOKENIZER = REAL_DATA / "tokenizers" / "qwen3"


def test_dry_run_checks_every_part_that_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--dry-run", "--out", str(out)]
    cmd += ["--tokenizer", str(TOKENIZER)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    parts = report["parts"]
    assert report["dry_run"] and report["environment"]["device"] == "cpu"

    # (a) sdpa ran and matched; flex_attention is GPU-only here and says why
    assert parts["a"]["status"] == "ok" and parts["a"]["sdpa"]["passed"]
    assert parts["a"]["sdpa"]["grad_max_relative_error"] <= gpu_check.GRAD_RTOL
    assert "backward on CPU" in parts["a"]["flex_attention"]["reason"]
    # (b) the CPU path is the per-item loop, and it matches the batched reference
    assert parts["b"]["status"] == "ok" and parts["b"]["packed_kernel"] == "per_item_sdpa"
    # (c) the step ran with and without checkpointing; no MFU without a GPU peak
    step = parts["c"]["sdpa"]
    assert step["status"] == "ok" and step["activation_checkpointing"] and step["mfu"] is None
    assert "CPU" in step["bf16_peak"] and step["flops"]["total"] > 0
    assert parts["c"]["sdpa_no_checkpointing"]["status"] == "ok"
    assert set(step["phases_s"]) == {
        "tower_connector_forward", "llm_forward", "backward_with_recompute", "optimizer",
    }  # fmt: skip
    # (d) three encoder cases timed
    assert parts["d"]["status"] == "ok" and len(parts["d"]["cases"]) == 3
    # (e) the real recipe under ZeRO-3, when the tokenizer is there
    if TOKENIZER.is_dir():
        assert parts["e"]["status"] == "ok", parts["e"]
        assert parts["e"]["steps"] == 2 and parts["e"]["exported"]
    else:
        assert parts["e"]["status"] == "skipped"
    assert "(c) bf16 training step, MFU: ok" in run.stdout


def test_a_broken_part_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("kernel exploded")

    monkeypatch.setitem(gpu_check.PARTS, "a", ("broken part", broken))
    out = tmp_path / "report.json"
    code = gpu_check.main(["--dry-run", "--parts", "ab", "--out", str(out)])
    report = json.loads(out.read_text())
    assert code == 1
    assert report["parts"]["a"]["status"] == "failed"
    assert report["parts"]["a"]["error"] == "RuntimeError: kernel exploded"
    assert "raise RuntimeError" in report["parts"]["a"]["traceback"]
    assert report["parts"]["b"]["status"] == "ok"
    assert not list(tmp_path.glob("*.tmp*"))  # written whole, under its name


def test_a_broken_variant_keeps_the_figures_of_the_others(tmp_path, monkeypatch):
    timed_steps = gpu_check._timed_steps

    def no_memory_without_checkpointing(ctx, kernel, checkpointing, breakdown):
        if not checkpointing:
            raise torch.OutOfMemoryError("CUDA out of memory (stand-in)")
        return timed_steps(ctx, kernel, checkpointing, breakdown)

    monkeypatch.setattr(gpu_check, "_timed_steps", no_memory_without_checkpointing)
    out = tmp_path / "report.json"
    assert gpu_check.main(["--dry-run", "--parts", "c", "--out", str(out)]) == 0
    step = json.loads(out.read_text())["parts"]["c"]
    assert step["status"] == "ok" and step["sdpa"]["status"] == "ok"
    assert step["sdpa_no_checkpointing"]["status"] == "failed"
    assert "out of memory" in step["sdpa_no_checkpointing"]["error"]
    assert step["fastest"] == "sdpa"


def test_unknown_part_and_missing_gpu_are_refused(capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--dry-run", "--parts", "az"])
    assert "unknown part(s) ['z']" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            gpu_check.main([])
        assert "no CUDA device here" in capsys.readouterr().err


def test_model_flops_count_the_real_shapes():
    """Built on the meta device: Qwen3-0.6B has 0.44B parameters outside its embedding (its
    model card), and OV-Encoder-large runs 23 of its 24 blocks for the LLM's features."""
    ctx = gpu_check.Context(torch.device("meta"), torch.bfloat16, gpu_check.FULL, None, 0.0)
    model = gpu_check.multimodal_model(ctx, gpu_check.QWEN3_06B, "sdpa", "large")
    gen = torch.Generator().manual_seed(0)
    visual = [gpu_check.codec_item(10_368, 36, gen) for _ in range(2)]
    flops = gpu_check.model_flops(model, [10_528, 10_528], visual, supervised=128)
    params = flops["parameters"]
    assert model.llm.model.rotary_emb.inv_freq.dtype == torch.float32  # as under DeepSpeed bf16
    assert model.llm.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert round(params["llm"] / 1e9, 2) == 0.44
    block = sum(p.numel() for p in model.tower.model.encoder.layers[0].parameters())
    assert params["tower"] > 23 * block > params["tower"] - 2 * block
    parts = flops["parts"]
    assert parts["llm_matmul"] == 6 * params["llm"] * 2 * 10_528
    assert parts["lm_head"] == 6 * 151_936 * 1024 * 128
    assert parts["llm_attention"] == 2 * 6 * 16 * 128 * 10_528**2 * 28
    assert flops["total"] == sum(parts.values())
