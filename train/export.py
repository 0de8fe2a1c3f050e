"""End of a stage: the trained weights as one HF folder that `from_pretrained` loads in one
call, with LoRA merged and the processor (media settings actually used) saved beside them.

Under ZeRO-3 no rank holds whole weights, so the state dict is gathered layer by layer to rank
0; rank 0 then loads it into a fresh copy of the model (same config, same LoRA wrapping),
merges the adapters and saves to a temporary folder that is renamed when complete.
"""

from __future__ import annotations

from pathlib import Path

import torch

from encoder.files import atomic_dir
from ovmllm.config import write_config
from ovmllm.model import OVMLLMForCausalLM
from train.config import StageConfig
from train.lora import apply_lora, merge_lora


def full_state_dict(engine) -> dict[str, torch.Tensor] | None:
    """Collective under ZeRO-3 (every rank calls); the whole state dict on rank 0. The engine's
    module (train/uniform_calls.py) names its parameters as the model does."""
    if engine.zero_optimization_partition_weights():
        return engine._zero3_consolidated_16bit_state_dict()
    if torch.distributed.get_rank() != 0:
        return None
    return {k: v.detach().cpu() for k, v in engine.module.state_dict().items()}


def export_model(engine, model: OVMLLMForCausalLM, cfg: StageConfig, out: Path) -> Path | None:
    """Collective. Writes `out` on rank 0 and returns it (None on other ranks)."""
    state = full_state_dict(engine)
    if state is None:
        return None
    fresh = OVMLLMForCausalLM(model.config)
    apply_lora(fresh, cfg.lora)
    dtype = next(v.dtype for v in state.values() if v.is_floating_point())
    fresh.to(dtype).load_state_dict(state, strict=True)
    merge_lora(fresh)
    fresh.processor = model.processor
    with atomic_dir(out) as tmp:
        fresh.save_pretrained(tmp)
        write_config(cfg, tmp / "stage_config.yaml")
    return out
