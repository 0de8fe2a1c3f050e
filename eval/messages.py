"""lmms-eval chat messages → one ovmllm conversation and its media, in placeholder order.

lmms-eval hands a chat model `[{"role": "user", "content": [{"type": "image", "url": ...},
{"type": "video", "url": ...}, {"type": "text", "text": ...}]}, ...]`: images as PIL images or
paths, videos as path strings (or dicts carrying one). The ovmllm processor wants LLaVA turns whose
text holds `<image>` / `<video>` placeholders, with the media in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

ROLE_TO_FROM = {"system": "system", "user": "human", "assistant": "gpt"}
PLACEHOLDERS = {"image": "<image>\n", "video": "<video>\n"}


class UnsupportedRequest(ValueError):
    """A request this model cannot answer as given (audio, several videos, an unknown role)."""


@dataclass
class Medium:
    kind: str  # image | video
    source: Image.Image | str

    def describe(self) -> str:
        return "<PIL image>" if isinstance(self.source, Image.Image) else str(self.source)


@dataclass
class Conversation:
    turns: list[dict] = field(default_factory=list)
    """LLaVA turns ({"from": "system" | "human" | "gpt", "value": ...}), prompt-ready."""
    media: list[Medium] = field(default_factory=list)
    """The images and video in the order their placeholders appear."""


def _video_path(url: Any) -> str:
    if isinstance(url, dict):  # lmms-eval wraps clips with a time window in a dict
        if url.get("video_start") is not None or url.get("video_end") is not None:
            raise UnsupportedRequest("video clips with video_start / video_end are not supported")
        url = url.get("url") or url.get("path") or url.get("video")
    if not isinstance(url, (str, Path)):
        raise UnsupportedRequest(f"a video must be given as a path, not {type(url).__name__}")
    return str(url)


def _image_source(url: Any) -> Image.Image | str:
    if isinstance(url, Image.Image):
        return url
    if isinstance(url, (str, Path)):
        return str(url)
    raise UnsupportedRequest(f"an image must be a PIL image or a path, not {type(url).__name__}")


def _field(content: Any, name: str) -> Any:
    return content.get(name) if isinstance(content, dict) else getattr(content, name, None)


def to_conversation(messages: list[dict]) -> Conversation:
    """Turns with placeholders where the media were, media in that order; a system message the
    task gives replaces the checkpoint's default system prompt. At most one video per request
    (the processor's item layout), any number of images."""
    conversation = Conversation()
    for message in messages:
        role = _field(message, "role")
        if role not in ROLE_TO_FROM:
            raise UnsupportedRequest(f"message role {role!r} is not system, user or assistant")
        content = _field(message, "content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts: list[str] = []
        for piece in content:
            kind = _field(piece, "type")
            if kind == "text":
                parts.append(_field(piece, "text") or "")
            elif kind == "image":
                conversation.media.append(Medium("image", _image_source(_field(piece, "url"))))
                parts.append(PLACEHOLDERS["image"])
            elif kind == "video":
                conversation.media.append(Medium("video", _video_path(_field(piece, "url"))))
                parts.append(PLACEHOLDERS["video"])
            else:
                raise UnsupportedRequest(f"content of type {kind!r} is not supported")
        conversation.turns.append({"from": ROLE_TO_FROM[role], "value": "".join(parts)})
    if sum(medium.kind == "video" for medium in conversation.media) > 1:
        raise UnsupportedRequest("more than one video in one request")
    if not conversation.turns or conversation.turns[-1]["from"] != "human":
        raise UnsupportedRequest("the last message must come from the user")
    return conversation
