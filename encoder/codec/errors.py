"""Exceptions of codec patch selection; each names the input and the reason."""

from __future__ import annotations

from pathlib import Path


class VideoDecodeError(RuntimeError):
    """A video could not be turned into a selection: missing, unreadable, no frames, too slow."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class AssetFormatError(ValueError):
    """An asset folder is incomplete or inconsistent."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class AssetSettingsError(AssetFormatError):
    """An asset folder was made with other codec settings than the ones it is loaded for."""
