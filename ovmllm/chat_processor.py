"""Chat processor: LLaVA conversations → input ids and labels, with media placeholders expanded.

- `<image>` and `<video>` in user turns become the item's runs of pad tokens, n in all being
  the number of tokens the tower and connector will emit for that item (given by the caller
  from `TowerSpec` / `ConnectorConfig`, no model needed), so text and features always line up
  (asserted after tokenisation). Layout `compact`: `vision_start + pad x n + vision_end` (runs
  split by `frame_separator` when set); layout `reference` (PAPER.md section 1): image pads,
  runs separated by a newline, no start/end. In a row whose media are all video, `<image>`
  refers to the video (LLaVA-Video-178K rows say `<image>`).
- The prompt comes from the tokenizer's own chat template. Labels supervise exactly the
  assistant content tokens and the end-of-turn token after each, located by character offsets
  in the rendered text: no per-model masking code. The template renders a sentinel in place of
  each message's content and the contents are spliced in at the sentinels, so a message is
  never searched for in the text (a short answer such as `a` also occurs in template text).
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
LAYOUTS = ("reference", "compact")
REFERENCE_SEPARATOR = "\n"  # between the runs of the reference layout (plain text)
# Stands for message i's content while the template renders: private-use characters, which no
# template writes and which survive its trims and checks (the contents never meet the pattern)
SENTINEL = "\ue000{}\ue001"
SENTINEL_PATTERN = re.compile("\ue000([0-9]+)\ue001")


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
    """In the `compact` media layout, text between the frames of a video's placeholder run
    (e.g. "\\n"); "" keeps a video one unbroken run of K tokens. The `reference` layout always
    separates its runs by a newline."""


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
    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        cfg: ChatConfig | None = None,
        layout: str = "compact",
    ) -> None:
        """`layout`: the media layout (`MediaConfig.layout`), reference | compact."""
        if tokenizer.chat_template is None:
            raise ValueError("the tokenizer has no chat template")
        if layout not in LAYOUTS:
            raise ValueError(f"layout={layout!r} is not one of {', '.join(LAYOUTS)}")
        self.tokenizer = tokenizer
        self.cfg = cfg or ChatConfig()
        self.layout = layout
        self.added_tokens = ensure_vision_tokens(tokenizer)
        self.token_ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in VISION_TOKENS.items()}
        self.end_of_turn = self._end_of_turn_marker()
        self.stop_token_ids = self._stop_token_ids()

    def _end_of_turn_marker(self) -> str:
        """What the template writes right after an assistant message (e.g. `<|im_end|>`)."""
        text, spans = self._render(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
        )
        after = text[spans[-1][1] :].split()
        return after[0] if after else ""

    def _stop_token_ids(self) -> list[int]:
        """Token ids that end an answer: the end-of-turn marker (when it is one token) and the
        tokenizer's end of sequence. Generation must stop on them itself: a random-init LLM's
        config names no end-of-sequence id, and without one greedy decoding runs on past the
        answer to `max_new_tokens`."""
        ids = []
        if self.end_of_turn:
            marker = self.tokenizer.encode(self.end_of_turn, add_special_tokens=False)
            ids += marker if len(marker) == 1 else []
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return list(dict.fromkeys(ids))

    def _render(
        self, messages: list[dict], generation_prompt: bool = False
    ) -> tuple[str, list[tuple[int, int]]]:
        """The rendered conversation and the character span of each message's content in it.

        The template renders `SENTINEL`s in place of the contents, which are then spliced in
        where the sentinels are. Assistant contents are stripped, so that an answer ends right
        before its end-of-turn marker."""
        contents = [
            m["content"].strip() if m["role"] == "assistant" else m["content"] for m in messages
        ]
        stand_ins = [{**m, "content": SENTINEL.format(i)} for i, m in enumerate(messages)]
        skeleton = self.tokenizer.apply_chat_template(
            stand_ins,
            tokenize=False,
            add_generation_prompt=generation_prompt,
            enable_thinking=False,
        )
        pieces = SENTINEL_PATTERN.split(skeleton)  # template text, index, template text, ...
        order = [int(i) for i in pieces[1::2]]
        if sorted(order) != list(range(len(messages))):
            raise SampleRejected(
                "template_mismatch",
                f"the chat template rendered message contents {order} of {len(messages)} "
                "messages (each must appear once)",
            )
        parts, spans, length = [pieces[0]], [(0, 0)] * len(messages), len(pieces[0])
        for index, template_text in zip(order, pieces[2::2], strict=True):
            spans[index] = (length, length + len(contents[index]))
            parts += [contents[index], template_text]
            length += len(contents[index]) + len(template_text)
        return "".join(parts), spans

    def messages(
        self, conversations: list[dict], media: list[tuple[str, int | list[int]]]
    ) -> list[dict]:
        """LLaVA turns → chat messages with each placeholder expanded to its token runs."""
        messages = []
        if self.cfg.system_prompt and not any(
            ROLES.get(t.get("from")) == "system" for t in conversations
        ):
            messages.append({"role": "system", "content": self.cfg.system_prompt})
        queue = list(media)
        # a row whose media are all video (LLaVA-Video-178K) writes <image> for its video
        image_means_video = bool(queue) and all(kind != "image" for kind, _ in queue)
        for turn in conversations:
            role = ROLES.get(turn.get("from"))
            if role is None:
                raise SampleRejected("bad_turn", f"unknown speaker {turn.get('from')!r}")
            text = str(turn.get("value", ""))
            if role == "user":
                text = self._expand(text, queue, image_means_video)
            elif any(p in text for p in PLACEHOLDERS.values()):
                raise SampleRejected("placeholder_mismatch", f"media placeholder in a {role} turn")
            messages.append({"role": role, "content": text})
        if queue:
            raise SampleRejected(
                "placeholder_mismatch", f"{len(queue)} media items without a placeholder"
            )
        return messages

    def _expand(
        self, text: str, queue: list[tuple[str, int | list[int]]], image_means_video: bool
    ) -> str:
        out = []
        for piece in PLACEHOLDER_PATTERN.split(text):  # text, placeholder, text, ...
            kind = PLACEHOLDER_KIND.get(piece)
            if kind is None:
                out.append(piece)
                continue
            if kind == "image" and image_means_video:
                kind = "video"
            if not queue:
                raise SampleRejected(
                    "placeholder_mismatch", f"more {PLACEHOLDERS[kind]} than media items"
                )
            item_kind, count = queue.pop(0)
            if (item_kind == "image") != (kind == "image"):
                raise SampleRejected(
                    "placeholder_mismatch", f"{PLACEHOLDERS[kind]} given a {item_kind} item"
                )
            runs = count if isinstance(count, list) else [count]
            if self.layout == "reference":
                # the reference feeds every run as an <image> of its own: image pads, a newline
                # between runs, nothing around them (PAPER.md section 1)
                pad = VISION_TOKENS["image"]
                out.append(REFERENCE_SEPARATOR.join(pad * n for n in runs))
                continue
            pad = VISION_TOKENS["image" if kind == "image" else "video"]
            if not self.cfg.frame_separator:
                runs = [sum(runs)]
            body = self.cfg.frame_separator.join(pad * n for n in runs)
            out += [VISION_TOKENS["start"], body, VISION_TOKENS["end"]]
        return "".join(out)

    def encode(
        self, conversations: list[dict], media: list[tuple[str, int | list[int]]] = ()
    ) -> EncodedSample:
        """media: (kind, tokens) per item in placeholder order, kind image | frames | codec;
        tokens may be given as runs (a list: per frame, or per canvas frame of a codec video)
        for the reference layout or `frame_separator` to split the item's placeholder."""
        messages = self.messages(conversations, list(media))
        text, content_spans = self._render(messages)
        spans = self._supervised_spans(text, messages, content_spans)
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

    def _supervised_spans(
        self, text: str, messages: list[dict], content_spans: list[tuple[int, int]]
    ) -> list[tuple[int, int]]:
        """Character spans of each assistant content plus its end-of-turn marker."""
        spans = []
        for message, (start, end) in zip(messages, content_spans, strict=True):
            if message["role"] != "assistant" or start == end:
                continue
            if self.end_of_turn and text.startswith(self.end_of_turn, end):
                end += len(self.end_of_turn)
            spans.append((start, end))
        return spans

    def generation_prompt(
        self, conversations: list[dict], media: list[tuple[str, int | list[int]]] = ()
    ) -> list[int]:
        """Token ids of a prompt for generating the next assistant turn."""
        text, _ = self._render(self.messages(conversations, list(media)), generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]
