"""The multimodal model: vision tower + connector + any HF causal LM (`tower`, `connector`,
`llm`: also the state-dict prefixes that trainability and learning rates address).

Visual features are scattered into the text embeddings at the placeholder tokens (one per
visual token, as the processor expanded them). The forward returns the sum of token losses
and the number of supervised tokens besides their mean, so training can normalise over the
global batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    modeling_utils,
)
from transformers.utils import ModelOutput

from connector import ConnectorConfig, build_connector
from encoder.packed import PackedVisualTokens
from encoder.towers import TOWERS, TowerConfig, build_tower
from ovmllm.chat_processor import IGNORE_INDEX
from ovmllm.data.packing import block_causal_mask, flex_block_mask
from ovmllm.multimodal_processor import PROCESSOR_FILE, MultimodalProcessor, ProcessorOverrides

# The LLM attention kernels whose packed-sequence mask the model builds (ovmllm/data/packing.py):
# SDPA reads a boolean mask; eager attention adds the mask to the scores, so it gets
# 0 where attended and the dtype's minimum where blocked; flex_attention takes a block-sparse
# BlockMask (on GPU it skips the blocks between samples; on CPU it runs forward only).
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flex_attention")

# transformers 5.24 takes a boolean [B, L] `logits_to_keep` (rows of packed samples keep different
# positions; `slice_logits_to_keep` came with it); 5.17, the GPU image's, takes only positions
# shared by every row, so there the model asks for the union and picks each row's own after.
LOGITS_KEEP_PER_ROW = hasattr(modeling_utils, "slice_logits_to_keep")


class OVMLLMConfig(PretrainedConfig):
    """Self-describing: the tower, connector and LLM configs, the LLM's attention kernel and the
    vision token ids."""

    model_type = "ovmllm"

    def __init__(
        self,
        tower: dict | None = None,
        tower_model: dict | None = None,
        connector: dict | None = None,
        llm_config: dict | PretrainedConfig | None = None,
        vision_token_ids: dict | None = None,
        llm_attn_implementation: str = "sdpa",
        **kwargs,
    ) -> None:
        self.tower = dict(tower or asdict(TowerConfig()))
        # the tower's own model config, saved so that loading needs no path to its weights
        self.tower_model = tower_model
        self.connector = dict(connector or asdict(ConnectorConfig()))
        if isinstance(llm_config, dict):
            llm_config = AutoConfig.for_model(**llm_config)
        self.llm_config = llm_config
        self.vision_token_ids = dict(vision_token_ids or {})
        # saved here because HF configs do not save their attention kernel
        self.llm_attn_implementation = llm_attn_implementation
        super().__init__(**kwargs)


@dataclass
class OVMLLMOutput(ModelOutput):
    loss: torch.Tensor | None = None  # mean over supervised tokens
    loss_sum: torch.Tensor | None = None
    num_tokens: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class OVMLLMForCausalLM(PreTrainedModel):
    config_class = OVMLLMConfig
    base_model_prefix = "ovmllm"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(
        self, config: OVMLLMConfig, llm: PreTrainedModel | None = None, tower=None
    ) -> None:
        super().__init__(config)
        self.tower = tower if tower is not None else self._tower_from_config(config)
        if config.tower_model is None:
            config.tower_model = self.tower.model_config()
        if llm is None:
            llm = AutoModelForCausalLM.from_config(
                config.llm_config, attn_implementation=config.llm_attn_implementation
            )
        self.llm = llm
        config.llm_attn_implementation = llm.config._attn_implementation
        llm_width = self.llm.get_input_embeddings().embedding_dim
        self.connector_config = ConnectorConfig(**config.connector)
        self.connector = build_connector(
            self.connector_config, self.tower.spec.output_width, llm_width
        )
        self.processor: MultimodalProcessor | None = (
            None  # attached by build_model / from_pretrained
        )
        self.post_init()

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """One self-describing folder: config, weights, and (when attached) the tokenizer with
        its chat template and the processor config."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.processor is not None:
            self.processor.save_pretrained(save_directory)

    @classmethod
    def from_pretrained(
        cls, path, *args, processor_overrides: ProcessorOverrides | None = None, **kwargs
    ):
        """The model and, when the folder has one, its processor (`model.processor`), with
        `processor_overrides` (of a stage or eval config) replacing saved media / chat settings."""
        model = super().from_pretrained(path, *args, **kwargs)
        if (Path(path) / PROCESSOR_FILE).is_file():
            spec = model.tower.spec
            model.processor = MultimodalProcessor.from_pretrained(path, spec, processor_overrides)
        return model

    @staticmethod
    def _tower_from_config(config: OVMLLMConfig):
        tower_cfg = TowerConfig(**config.tower)
        if config.tower_model is None:
            return build_tower(tower_cfg)
        return TOWERS[tower_cfg.name].from_model_config(config.tower_model, tower_cfg)

    def _init_weights(self, module: nn.Module) -> None:
        """The connector's layers (sub-models initialise themselves)."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Module:
        return self.llm.get_input_embeddings()

    @property
    def media_token_ids(self) -> list[int]:
        ids = self.config.vision_token_ids
        return [ids[k] for k in ("image", "video") if k in ids]

    def visual_features(
        self, visual: PackedVisualTokens | list[PackedVisualTokens] | None
    ) -> torch.Tensor:
        """Tower then connector: [N_visual_tokens, llm_width] in item order."""
        features = self.item_features(visual or [])
        if not features:
            return torch.zeros(0, device=self.llm.get_input_embeddings().weight.device)
        return torch.cat(features)

    def item_features(
        self, visual: PackedVisualTokens | list[PackedVisualTokens]
    ) -> list[torch.Tensor]:
        """Tower then connector, one [n_tokens, llm_width] tensor per item, in item order.

        Items may come at different producer patch sizes (images cut at the tower's 14 px,
        codec cells at 16 px): each size is one packed tower call, in ascending size order.
        """
        packs = visual if isinstance(visual, list) else [visual]
        items = [pack.item(i) for pack in packs for i in range(len(pack))]
        by_size: dict[int, list[int]] = {}
        for index, item in enumerate(items):
            by_size.setdefault(item.patch_size, []).append(index)
        features: list[torch.Tensor | None] = [None] * len(items)
        for _, indices in sorted(by_size.items()):
            group = PackedVisualTokens.concat([items[i] for i in indices])
            out = self.tower(group)
            lengths = (out.cu_seqlens[1:] - out.cu_seqlens[:-1]).tolist()
            projected = self.connector(out.features, group.grids, lengths)
            counts = [
                self.connector_config.num_output_tokens(kind, n, grid)
                for kind, n, grid in zip(group.kinds, lengths, group.grids, strict=True)
            ]
            for i, part in zip(indices, projected.split(counts), strict=True):
                features[i] = part
        return features

    def embed(
        self,
        input_ids: torch.Tensor,
        visual: PackedVisualTokens | list[PackedVisualTokens] | None = None,
    ) -> torch.Tensor:
        """Text embeddings with the visual features at the placeholders."""
        features = self.visual_features(visual) if visual else None
        return self.embed_features(input_ids, features)

    def embed_features(
        self, input_ids: torch.Tensor, features: torch.Tensor | None
    ) -> torch.Tensor:
        """Text embeddings with `features` (visual tokens in item order, computed already) at
        the placeholders."""
        embeds = self.llm.get_input_embeddings()(input_ids)
        slots = torch.isin(input_ids, torch.tensor(self.media_token_ids, device=input_ids.device))
        num_slots = int(slots.sum())
        if features is None:
            if num_slots:
                raise ValueError(f"{num_slots} visual placeholders but no media given")
            return embeds
        if features.shape[0] != num_slots:
            raise ValueError(f"{features.shape[0]} visual tokens for {num_slots} placeholders")
        if num_slots:
            embeds = embeds.masked_scatter(slots[..., None], features.to(embeds.dtype))
        return embeds

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        visual: PackedVisualTokens | list[PackedVisualTokens] | None = None,
        segment_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **llm_kwargs,
    ) -> OVMLLMOutput:
        """`segment_ids` [B, L] marks packed samples (1, 2, ... per sequence, 0 = padding), with
        `position_ids` reset per sample: attention stays inside each sample, through a
        block-causal mask in the form the LLM's attention kernel takes.

        With `labels`, the LM head runs only at positions whose next token is supervised (the
        vocabulary projection of every position would dominate a training step: 150K x hidden
        per token), and `logits` are those rows, [N_supervised, vocab], in sequence order.
        `inputs_embeds` (with the visual features in place already) replaces `embed`."""
        embeds = inputs_embeds if inputs_embeds is not None else self.embed(input_ids, visual)
        if segment_ids is not None:
            attention_mask = self._packed_mask(segment_ids, embeds.dtype)
        keep = None
        if labels is not None:
            keep = torch.zeros_like(labels, dtype=torch.bool)
            keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
            columns = None if LOGITS_KEEP_PER_ROW else keep.any(0)
            llm_kwargs["logits_to_keep"] = keep if columns is None else columns.nonzero()[:, 0]
        out = self.llm(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **llm_kwargs,
        )
        if labels is None:
            return OVMLLMOutput(logits=out.logits)
        logits = out.logits
        if columns is not None:  # [B, columns, V] → each row's own kept positions, in order
            logits = logits[keep[:, columns]]
        logits = logits.reshape(-1, logits.shape[-1])
        targets = labels[:, 1:][keep[:, :-1]]
        loss_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
        num_tokens = keep.sum()
        return OVMLLMOutput(
            loss=loss_sum / num_tokens.clamp(min=1),
            loss_sum=loss_sum,
            num_tokens=num_tokens,
            logits=logits,
        )

    def _packed_mask(self, segment_ids: torch.Tensor, dtype: torch.dtype):
        kernel = self.llm.config._attn_implementation
        if kernel == "sdpa":
            return block_causal_mask(segment_ids)
        if kernel == "eager":  # adds the mask to the scores: a boolean one would mask nothing
            return block_causal_mask(segment_ids, dtype)
        if kernel == "flex_attention":
            return flex_block_mask(segment_ids)
        raise ValueError(
            f"packed sequences (segment_ids) need LLM attention "
            f"{' | '.join(ATTENTION_IMPLEMENTATIONS)}, not {kernel!r}"
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        visual: PackedVisualTokens | list[PackedVisualTokens] | None = None,
        attention_mask: torch.Tensor | None = None,
        **generate_kwargs,
    ) -> torch.Tensor:
        """New token ids only; the prompt is embedded once, then the LLM decodes with its cache."""
        embeds = self.embed(input_ids, visual)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.llm.generate(
            inputs_embeds=embeds, attention_mask=attention_mask, **generate_kwargs
        )


# Registering with the Auto classes (the one import-time side effect the design allows) lets
# AutoTokenizer / AutoConfig read a checkpoint folder whose config says model_type "ovmllm".
AutoConfig.register(OVMLLMConfig.model_type, OVMLLMConfig, exist_ok=True)
AutoModelForCausalLM.register(OVMLLMConfig, OVMLLMForCausalLM, exist_ok=True)
