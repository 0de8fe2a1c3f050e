"""The module handed to DeepSpeed: the model, with the tower called once per patch size on
every forward of every rank.

ZeRO-3 gathers a module's parameters with a collective on each call, so all ranks must make
the same calls or they hang (or crash). A micro-batch may hold images (14 px patches), codec
videos (16 px cells), both or neither, differently on each rank. Here every size the processor
produces runs through the tower and connector on every forward, in ascending order: a size the
batch lacks runs on a dummy item whose features only enter as `0 x their sum`. The loss and the
gradients are those of the model alone (the dummy term is zero; the parameters it touches get
zero gradients) and dummy features never fill placeholders.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from encoder.packed import PackedVisualTokens
from ovmllm.model import OVMLLMForCausalLM, OVMLLMOutput


class UniformTowerCalls(nn.Module):
    def __init__(self, model: OVMLLMForCausalLM, patch_sizes: Sequence[int]) -> None:
        super().__init__()
        # the parts registered under the model's own names: state-dict keys (checkpoints, the
        # export), trainability and optimiser groups address `tower`, `connector`, `llm` as on
        # the model itself
        for name, part in model.named_children():  # tower, llm, connector
            self.add_module(name, part)
        self.__dict__["model"] = model  # not a module attribute: the parts are registered once
        self.patch_sizes = sorted(patch_sizes)

    def forward(
        self,
        input_ids: torch.Tensor,
        visual: PackedVisualTokens | list[PackedVisualTokens] | None = None,
        **inputs,
    ) -> OVMLLMOutput:
        packs = visual if isinstance(visual, list) else [visual] if visual is not None else []
        present = {pack.item(i).patch_size for pack in packs for i in range(len(pack))}
        unknown = present - set(self.patch_sizes)
        if unknown:
            raise ValueError(
                f"visual items with {sorted(unknown)} px patches, but the tower runs at "
                f"{self.patch_sizes} on every rank (set by the processor's media settings)"
            )
        dummies = [
            self.tower.dummy_item(size).to_device(input_ids.device)
            for size in self.patch_sizes
            if size not in present
        ]
        # one tower call per size: a dummy joins the call of its size, which has no real item
        features = self.model.item_features([*packs, *dummies])
        num_real = len(features) - len(dummies)
        real = torch.cat(features[:num_real]) if num_real else None
        embeds = self.model.embed_features(input_ids, real)
        if dummies:
            anchor = 0.0 * sum(f.sum() for f in features[num_real:])
            embeds = embeds + anchor.to(embeds.dtype)
        return self.model(input_ids, inputs_embeds=embeds, **inputs)
