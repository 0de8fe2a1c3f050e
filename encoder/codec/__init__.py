"""Codec patch selection: a video's salient patches from its own bitstream (PAPER.md section 2).

from encoder.codec import CodecConfig, select_patches
selection = select_patches("clip.mp4", CodecConfig())   # K patches of 64 sampled frames
tokens = selection.to_packed()                            # the packed visual-token contract
"""

from encoder.codec.assets import read_assets, write_assets
from encoder.codec.config import CodecConfig
from encoder.codec.errors import AssetFormatError, VideoDecodeError
from encoder.codec.select import select_patches, select_with_frames, uniform_frames
from encoder.codec.selection import PatchSelection

__all__ = [
    "AssetFormatError",
    "CodecConfig",
    "PatchSelection",
    "VideoDecodeError",
    "read_assets",
    "select_patches",
    "select_with_frames",
    "uniform_frames",
    "write_assets",
]
