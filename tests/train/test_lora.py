"""LoRA on each vision tower adapts the declared projections of every block the features reach
(and nothing else), trains, and refuses targets that match only some blocks."""

import pytest
import torch
from torch import nn

from encoder.packed import PackedVisualTokens
from encoder.towers import TowerConfig, build_tower
from ovmllm.build import LLMConfig, build_llm
from train.config import LoraConfig
from train.lora import apply_lora

ATTENTION_MLP = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                 "mlp.fc1", "mlp.fc2")  # fmt: skip
# tiny towers: 2 blocks; onevision and siglip2 hand the LLM hidden_states[-2] (block 0's output)
EXPECTED = {
    "onevision": [f"model.encoder.layers.0.{m}" for m in ATTENTION_MLP],
    "siglip2": [f"model.encoder.layers.0.{m}" for m in ATTENTION_MLP],
    "qwen3_vit": [
        f"model.blocks.{i}.{m}"
        for i in (0, 1)
        for m in ("attn.qkv", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2")
    ],
}


class Holder(nn.Module):
    """The part attributes `apply_lora` wraps, as on the full model."""

    def __init__(self, tower: nn.Module | None = None, llm: nn.Module | None = None) -> None:
        super().__init__()
        self.tower, self.llm = tower, llm


def image(tower, side: int = 4) -> PackedVisualTokens:
    hh, ww = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    positions = torch.stack(
        [torch.zeros(side * side, dtype=torch.long), hh.flatten(), ww.flatten()], 1
    )
    p = tower.spec.patch_size
    return PackedVisualTokens(
        patches=torch.randint(0, 256, (side * side, 3, p, p), dtype=torch.uint8),
        positions=positions.to(torch.int32),
        cu_seqlens=torch.tensor([0, side * side], dtype=torch.int32),
        kinds=["image"],
        grids=[(1, side, side)],
    )


def adapted(module: nn.Module) -> list[str]:
    return sorted(
        n.removeprefix("base_model.model.")
        for n, m in module.named_modules()
        if hasattr(m, "lora_A")
    )


@pytest.mark.parametrize("name", list(EXPECTED))
def test_lora_adapts_every_declared_tower_module_and_trains(name):
    torch.manual_seed(0)
    holder = Holder(build_tower(TowerConfig(name=name)))
    apply_lora(holder, LoraConfig(parts=["tower"], r=4, alpha=8))
    assert adapted(holder.tower) == sorted(EXPECTED[name])
    trainable = [p for p in holder.tower.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    item = image(holder.tower.base_model.model)
    target = torch.randn_like(holder.tower(item).features)
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    losses = []
    for _ in range(3):
        loss = (holder.tower(item).features - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert all(not torch.equal(a, p) for a, p in zip(before, trainable, strict=True))


def test_targets_matching_only_some_blocks_are_refused():
    tower = build_tower(TowerConfig(name="qwen3_vit"))
    with pytest.raises(ValueError, match=r"lora on tower.*qkv_proj.*matched 0"):
        apply_lora(Holder(tower), LoraConfig(parts=["tower"], tower_targets=["qkv_proj"]))
    del tower.model.blocks[1].mlp.linear_fc2  # a block that lacks a declared target
    with pytest.raises(ValueError, match=r"mlp\.linear_fc2.*matched 1 of 2"):
        apply_lora(Holder(tower), LoraConfig(parts=["tower"]))
    llm = build_llm(LLMConfig(), 64)  # a target list that matches in part
    with pytest.raises(ValueError, match=r"lora on llm.*'qkv' matched 0 of 2"):
        apply_lora(Holder(llm=llm), LoraConfig(parts=["llm"], llm_targets=["q_proj", "qkv"]))
