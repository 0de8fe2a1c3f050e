"""Codec patch selection: a video's salient patches from its own bitstream (PAPER.md section 2).

from encoder.codec import CodecConfig, select_patches
selection = select_patches("clip.mp4", CodecConfig())   # K patches of 64 sampled frames
tokens = selection.to_packed()                            # the packed visual-token contract

The settings, the result and the asset format import no video library, so the model side can
use them on a machine without PyAV; the entry points that decode (`pipeline.py`) load on first
use.
"""

from encoder.codec.assets import read_assets, write_assets
from encoder.codec.config import CodecConfig
from encoder.codec.errors import AssetFormatError, AssetSettingsError, VideoDecodeError
from encoder.codec.selection import PatchSelection

_DECODING = ("select_patches", "select_with_frames", "select_with_scores", "uniform_frames")

__all__ = [
    "AssetFormatError",
    "AssetSettingsError",
    "CodecConfig",
    "PatchSelection",
    "VideoDecodeError",
    "read_assets",
    "select_patches",
    "select_with_frames",
    "select_with_scores",
    "uniform_frames",
    "write_assets",
]


def __getattr__(name: str):
    if name in _DECODING:
        from encoder.codec import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
