"""Media + chat in one step: a LLaVA row (or a chat turn) → token ids, labels, visual tokens.

Token counts per item come from the tower's `TowerSpec` and the connector config, so this runs
in dataloader workers without a model. Saved next to the model weights (tokenizer files and
`processor_config.json`), so a checkpoint folder restores the exact media settings it was
trained with.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import AutoTokenizer

from connector import ConnectorConfig
from encoder.packed import PackedVisualTokens
from encoder.towers import TowerSpec
from ovmllm.config import load_config
from ovmllm.media import MediaConfig, load_image, load_video
from ovmllm.processor import ChatProcessor, EncodedSample, ProcessorConfig

PROCESSOR_FILE = "processor_config.json"


class MultimodalProcessor:
    def __init__(
        self,
        tokenizer,
        spec: TowerSpec,
        connector: ConnectorConfig,
        media: MediaConfig | None = None,
        chat: ProcessorConfig | None = None,
    ) -> None:
        self.chat = ChatProcessor(tokenizer, chat)
        self.spec = spec
        self.connector = connector
        self.media = media or MediaConfig()

    @property
    def tokenizer(self):
        return self.chat.tokenizer

    def tokens_for(self, item: PackedVisualTokens) -> int:
        kind, length, grid = item.kinds[0], item.lengths[0], item.grids[0]
        return self.connector.num_output_tokens(
            kind, self.spec.num_output_tokens(kind, length, grid), grid
        )

    def patch_sizes(self) -> list[int]:
        """Patch sizes of the items this processor produces (the tower runs once per size)."""
        sizes = {self.spec.patch_size}
        if self.media.video_mode == "codec" and "codec" in self.spec.kinds:
            sizes.add(self.media.codec.patch)
        return sorted(sizes)

    def frame_tokens(self, item: PackedVisualTokens) -> list[int]:
        """Output tokens per frame (per temporal token), in order; one entry for an image."""
        total = self.tokens_for(item)
        kind, grid = item.kinds[0], item.grids[0]
        if kind == "image":
            return [total]
        if kind == "codec":  # rows are sorted by t and each patch gives one token
            return torch.unique_consecutive(item.positions[:, 0], return_counts=True)[1].tolist()
        frames = -(-grid[0] // self.spec.temporal_patch)
        return [total // frames] * frames

    def load(
        self,
        images: list[str | Path] = (),
        video: str | Path | None = None,
        assets: str | Path | None = None,
    ) -> list[PackedVisualTokens]:
        items = [load_image(path, self.media, self.spec) for path in images]
        if video is not None:
            items.append(load_video(video, self.media, self.spec, assets))
        return items

    def encode(
        self, conversations: list[dict], items: list[PackedVisualTokens]
    ) -> tuple[EncodedSample, list[PackedVisualTokens]]:
        """Token ids and labels, and the items in placeholder order (the model's `visual`)."""
        sample = self.chat.encode(conversations, self._media(items))
        return sample, list(items)

    def prompt(self, conversations: list[dict], items: list[PackedVisualTokens]) -> list[int]:
        return self.chat.generation_prompt(conversations, self._media(items))

    def _media(self, items: list[PackedVisualTokens]) -> list[tuple[str, int | list[int]]]:
        if self.chat.cfg.frame_separator:
            return [(it.kinds[0], self.frame_tokens(it)) for it in items]
        return [(it.kinds[0], self.tokens_for(it)) for it in items]

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.tokenizer.save_pretrained(folder)
        payload = {
            "media": asdict(self.media),
            "chat": asdict(self.chat.cfg),
            "connector": asdict(self.connector),
        }
        tmp = folder / f".{PROCESSOR_FILE}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(payload, indent=1))
        tmp.replace(folder / PROCESSOR_FILE)

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, spec: TowerSpec, overrides: list[str] = ()
    ) -> MultimodalProcessor:
        """`overrides`: dotted `media.*` / `chat.*` keys from a stage or eval config."""
        folder = Path(folder)
        payload = json.loads((folder / PROCESSOR_FILE).read_text())
        media_keys = [o.removeprefix("media.") for o in overrides if o.startswith("media.")]
        chat_keys = [o.removeprefix("chat.") for o in overrides if o.startswith("chat.")]
        media = load_config(MediaConfig, None, media_keys, base=payload["media"])
        chat = load_config(ProcessorConfig, None, chat_keys, base=payload["chat"])
        connector = ConnectorConfig(**payload["connector"])
        return cls(AutoTokenizer.from_pretrained(folder), spec, connector, media, chat)
