"""Media + chat in one step: a LLaVA row (or a chat turn) → token ids, labels, visual tokens.

Token counts per item come from the tower's `TowerSpec` and the connector config, so this runs
in dataloader workers without a model. Saved next to the model weights (tokenizer files and
`processor_config.json`), so a checkpoint folder restores the exact media settings it was
trained with; a stage or eval config changes some of them with `ProcessorOverrides`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer

from connector import ConnectorConfig
from encoder.files import write_text_atomic
from encoder.packed import PackedVisualTokens
from encoder.towers import TowerSpec
from ovmllm.chat_processor import ChatConfig, ChatProcessor, EncodedSample
from ovmllm.config import apply_overrides, load_config, overrides_of
from ovmllm.media import MediaConfig, load_image, load_video

PROCESSOR_FILE = "processor_config.json"

MediaOverrides = overrides_of(MediaConfig, __name__)
ChatOverrides = overrides_of(ChatConfig, __name__)


@dataclass
class ProcessorOverrides:
    """Media and chat settings that replace a checkpoint's saved ones (a stage or eval config
    changing e.g. `media.image.mode`); fields left unset keep the saved value."""

    media: MediaOverrides = field(default_factory=MediaOverrides)
    """Keys of `MediaConfig` (image policy, video mode, codec settings)."""
    chat: ChatOverrides = field(default_factory=ChatOverrides)
    """Keys of `ChatConfig` (max_length, system_prompt, frame_separator)."""


class MultimodalProcessor:
    def __init__(
        self,
        tokenizer,
        spec: TowerSpec,
        connector: ConnectorConfig,
        media: MediaConfig | None = None,
        chat: ChatConfig | None = None,
    ) -> None:
        self.media = media or MediaConfig()
        self.chat = ChatProcessor(tokenizer, chat, self.media.layout)
        self.spec = spec
        self.connector = connector

    @property
    def tokenizer(self):
        return self.chat.tokenizer

    def num_visual_tokens(self, item: PackedVisualTokens) -> int:
        """Placeholder tokens of one item: what the tower and connector will emit for it."""
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

    def tokens_per_frame(self, item: PackedVisualTokens) -> list[int]:
        """Visual tokens per frame (per temporal token), in order; one entry for an image."""
        total = self.num_visual_tokens(item)
        kind, grid = item.kinds[0], item.grids[0]
        if kind == "image":
            return [total]
        if kind == "codec":  # each patch gives one token; rows were cut in t order
            # counted per t, not per run of equal t: the `shuffle` control permutes the
            # positions (not the rows), and the multiset of t, hence each frame's count, is kept
            return torch.unique(item.positions[:, 0], return_counts=True)[1].tolist()
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

    def encode(self, conversations: list[dict], items: list[PackedVisualTokens]) -> EncodedSample:
        """Token ids and labels, each placeholder expanded to its item's visual tokens; `items`
        are in placeholder order (they are the model's `visual` input as they are)."""
        return self.chat.encode(conversations, self._token_counts(items))

    def prompt(self, conversations: list[dict], items: list[PackedVisualTokens]) -> list[int]:
        """Token ids of a generation prompt for the next assistant turn."""
        return self.chat.generation_prompt(conversations, self._token_counts(items))

    def token_runs(self, item: PackedVisualTokens) -> list[int]:
        """The item's placeholder tokens cut into the runs of the reference layout.

        Our reading of PAPER.md section 1 and of the reference's lmms-eval integration (which
        writes one bare `<image>` per frame, joined by newlines, and replaces each by features
        alone, no start/end tokens): an image is one run; a frames video one run per frame
        (per temporal token of the tower); a codec video consecutive runs of one canvas
        frame's tokens in (t, h, w) order (the mosaics), the last one shorter when K is not a
        multiple."""
        total = self.num_visual_tokens(item)
        if item.kinds[0] != "codec":
            return self.tokens_per_frame(item)
        patches = self.media.codec.patches_per_frame
        per_frame = self.connector.num_output_tokens(
            "codec", self.spec.num_output_tokens("codec", patches, None), None
        )
        return [min(per_frame, total - start) for start in range(0, total, per_frame)]

    def _token_counts(self, items: list[PackedVisualTokens]) -> list[tuple[str, int | list[int]]]:
        if self.media.layout == "reference":
            return [(it.kinds[0], self.token_runs(it)) for it in items]
        if self.chat.cfg.frame_separator:
            return [(it.kinds[0], self.tokens_per_frame(it)) for it in items]
        return [(it.kinds[0], self.num_visual_tokens(it)) for it in items]

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.tokenizer.save_pretrained(folder)
        payload = {
            "media": asdict(self.media),
            "chat": asdict(self.chat.cfg),
            "connector": asdict(self.connector),
        }
        write_text_atomic(folder / PROCESSOR_FILE, json.dumps(payload, indent=1))

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, spec: TowerSpec, overrides: ProcessorOverrides | None = None
    ) -> MultimodalProcessor:
        """The processor saved in `folder`, with `overrides` replacing saved settings."""
        folder = Path(folder)
        payload = json.loads((folder / PROCESSOR_FILE).read_text())
        overrides = overrides or ProcessorOverrides()
        media = apply_overrides(load_config(MediaConfig, base=payload["media"]), overrides.media)
        chat = apply_overrides(load_config(ChatConfig, base=payload["chat"]), overrides.chat)
        connector = ConnectorConfig(**payload["connector"])
        return cls(AutoTokenizer.from_pretrained(folder), spec, connector, media, chat)
