"""Chat processor: LLaVA conversations → input ids and labels, with media placeholders expanded.

- `<image>` and `<video>` in user turns become `vision_start + pad x n + vision_end`, n being the
  number of tokens the tower and connector will emit for that item (given by the caller from
  `TowerSpec` / `ConnectorConfig`, no model needed), so text and features always line up
  (asserted after tokenisation).
- The prompt comes from the tokenizer's own chat template. Labels supervise exactly the
  assistant content tokens and the end-of-turn token after each, located by character offsets
  in the rendered text: no per-model masking code.
- Qwen3's hybrid-thinking template renders an empty `<think>\\n\\n</think>\\n\\n` before the last
  assistant answer (and none before earlier ones). That block is template scaffolding, not
  assistant content: it is never supervised, and generation prompts are rendered with
  `enable_thinking=False` so that they end in the same empty block the model saw in training.
- A sample with zero supervised tokens, one whose visual tokens truncation would cut, or one
  whose placeholders do not match its media raises `SampleRejected` with a reason code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
PLACEHOLDERS = {"image": "<image>", "video": "<video>"}
PLACEHOLDER_KIND = {text: kind for kind, text in PLACEHOLDERS.items()}
PLACEHOLDER_PATTERN = re.compile("(" + "|".join(re.escape(p) for p in PLACEHOLDERS.values()) + ")")
ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
# Qwen's own vision tokens; tokenizers without them get these added as special tokens.
VISION_TOKENS = {
    "start": "<|vision_start|>",
    "end": "<|vision_end|>",
    "image": "<|image_pad|>",
    "video": "<|video_pad|>",
}


class SampleRejected(ValueError):
    """A sample that cannot be trained on; `reason` is a short code for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class ChatConfig:
    """How conversations become tokens (the `chat:` key of a model config)."""

    max_length: int = 4096
    """Tokens per sample: longer ones are cut, or rejected when the cut would hit visual tokens
    (a training stage sets it to its own `max_length`)."""
    system_prompt: str = "You are a helpful assistant."
    """Added when a conversation has no system turn (the reference's); "" for none."""
    frame_separator: str = ""
    """Text between the frames of a video's placeholder run (e.g. "\\n"); "" (the reference's
    layout) keeps a video one unbroken run of K tokens."""


@dataclass
class EncodedSample:
    input_ids: list[int]
    labels: list[int]
    media_tokens: list[int]  # placeholder tokens per media item, in order

    @property
    def num_supervised(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def ensure_vision_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add the vision tokens the tokenizer lacks; returns how many were added (resize the LLM's
    embeddings when > 0)."""
    vocab = tokenizer.get_vocab()
    missing = [tok for tok in VISION_TOKENS.values() if tok not in vocab]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": missing}, replace_extra_special_tokens=False
        )
    return len(missing)


class ChatProcessor:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, cfg: ChatConfig | None = None) -> None:
        if tokenizer.chat_template is None:
            raise ValueError("the tokenizer has no chat template")
        self.tokenizer = tokenizer
        self.cfg = cfg or ChatConfig()
        self.added_tokens = ensure_vision_tokens(tokenizer)
        self.token_ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in VISION_TOKENS.items()}
        self.end_of_turn = self._end_of_turn_marker()

    def _end_of_turn_marker(self) -> str:
        """What the template writes right after an assistant message (e.g. `<|im_end|>`)."""
        sentinel = "SENTINEL-7f3a"
        text = self._render(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": sentinel}]
        )
        after = text[text.rindex(sentinel) + len(sentinel) :]
        return after.split()[0] if after.split() else ""

    def _render(self, messages: list[dict], generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt, enable_thinking=False
        )

    def messages(self, conversations: list[dict], media: list[tuple[str, int]]) -> list[dict]:
        """LLaVA turns → chat messages with each placeholder expanded to its token run."""
        messages = []
        if self.cfg.system_prompt and not any(
            ROLES.get(t.get("from")) == "system" for t in conversations
        ):
            messages.append({"role": "system", "content": self.cfg.system_prompt})
        queue = list(media)
        for turn in conversations:
            role = ROLES.get(turn.get("from"))
            if role is None:
                raise SampleRejected("bad_turn", f"unknown speaker {turn.get('from')!r}")
            text = str(turn.get("value", ""))
            if role == "user":
                text = self._expand(text, queue)
            elif any(p in text for p in PLACEHOLDERS.values()):
                raise SampleRejected("placeholder_mismatch", f"media placeholder in a {role} turn")
            messages.append({"role": role, "content": text})
        if queue:
            raise SampleRejected(
                "placeholder_mismatch", f"{len(queue)} media items without a placeholder"
            )
        return messages

    def _expand(self, text: str, queue: list[tuple[str, int]]) -> str:
        out = []
        for piece in PLACEHOLDER_PATTERN.split(text):  # text, placeholder, text, ...
            kind = PLACEHOLDER_KIND.get(piece)
            if kind is None:
                out.append(piece)
                continue
            if not queue:
                raise SampleRejected(
                    "placeholder_mismatch", f"more {PLACEHOLDERS[kind]} than media items"
                )
            item_kind, count = queue.pop(0)
            if (item_kind == "image") != (kind == "image"):
                raise SampleRejected(
                    "placeholder_mismatch", f"{PLACEHOLDERS[kind]} given a {item_kind} item"
                )
            pad = VISION_TOKENS["image" if kind == "image" else "video"]
            runs = count if isinstance(count, list) else [count]
            if not self.cfg.frame_separator:
                runs = [sum(runs)]
            body = self.cfg.frame_separator.join(pad * n for n in runs)
            out += [VISION_TOKENS["start"], body, VISION_TOKENS["end"]]
        return "".join(out)

    def encode(
        self, conversations: list[dict], media: list[tuple[str, int | list[int]]] = ()
    ) -> EncodedSample:
        """media: (kind, tokens) per item in placeholder order, kind image | frames | codec;
        tokens may be given per frame (a list) for `frame_separator` to split the run."""
        messages = self.messages(conversations, list(media))
        text = self._render(messages)
        spans = self._supervised_spans(text, messages)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        labels = [
            tok if any(a <= start and end <= b for a, b in spans) and end > start else IGNORE_INDEX
            for tok, (start, end) in zip(ids, enc["offset_mapping"], strict=True)
        ]
        pad_ids = {self.token_ids["image"], self.token_ids["video"]}
        totals = [sum(n) if isinstance(n, list) else n for _, n in media]
        expected = sum(totals)
        found = sum(t in pad_ids for t in ids)
        if found != expected:  # text and features must line up, always
            raise RuntimeError(
                f"placeholder expansion gave {found} pad tokens, expected {expected}"
            )
        if len(ids) > self.cfg.max_length:
            cut = self.cfg.max_length
            if any(t in pad_ids for t in ids[cut:]):
                raise SampleRejected(
                    "visual_tokens_truncated", f"{len(ids)} tokens > max_length {cut}"
                )
            ids, labels = ids[:cut], labels[:cut]
        sample = EncodedSample(ids, labels, totals)
        if sample.num_supervised == 0:
            raise SampleRejected("no_supervised_tokens", "no assistant token left to learn")
        return sample

    def _supervised_spans(self, text: str, messages: list[dict]) -> list[tuple[int, int]]:
        """Character spans of each assistant content plus its end-of-turn marker."""
        spans, cursor = [], 0
        for message in messages:
            content = message["content"].strip()
            if not content:
                continue
            start = text.find(content, cursor)
            if start < 0:
                raise SampleRejected(
                    "template_mismatch", f"{message['role']} text not found in the rendered prompt"
                )
            end = start + len(content)
            cursor = end
            if message["role"] == "assistant":
                if self.end_of_turn and text.startswith(self.end_of_turn, end):
                    end += len(self.end_of_turn)
                spans.append((start, end))
        return spans

    def generation_prompt(
        self, conversations: list[dict], media: list[tuple[str, int]] = ()
    ) -> list[int]:
        """Token ids of a prompt for generating the next assistant turn."""
        text = self._render(self.messages(conversations, list(media)), generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]
