"""Media settings and loading: one image or video → one packed visual-token item.

The settings live in the processor config saved with every checkpoint; stage and eval configs
may override them. Video is either codec-selected patches (`codec`, the OneVision-Encoder
default; from a precomputed asset folder when the row has one) or uniform frames (`frames`,
for the grid towers and for like-for-like baselines). Only decoding loads PyAV, so a machine
without it can build the model and train on images or precomputed codec assets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from encoder.codec import CodecConfig, read_assets, write_assets
from encoder.codec.assets import asset_key
from encoder.packed import PackedVisualTokens
from encoder.producers import ImagePolicy, frames_config, frames_item, image_item
from encoder.towers import TowerSpec


@dataclass
class MediaConfig:
    image: ImagePolicy = field(default_factory=ImagePolicy)
    """How images are resized before patching."""
    video_mode: str = "codec"
    """`codec` (selected patches) or `frames` (uniform dense frames)."""
    codec: CodecConfig = field(default_factory=CodecConfig)
    """Codec patch selection, in `codec` mode."""
    frames: int = 8
    """Uniform frames per video in `frames` mode."""
    frame_size: int = 0
    """Frames-mode canvas side in px; 0 = the tower's own (`TowerSpec.frame_size`: the paper's
    504 for OV-Encoder, 512 for SigLIP2 and Qwen3-ViT)."""
    cache_dir: str = ""
    """Codec selections (and, in `frames` mode, the decoded frames) cached here, keyed on path,
    size, mtime, settings."""
    layout: str = "compact"
    """Placeholder tokens in the LLM's text: `reference` (the paper's: runs of image pads, one
    per canvas frame of a codec video / per frame / per image, newline-separated, no vision
    start/end) or `compact` (one run per item between vision start/end; the default, so that
    checkpoints saved before this key keep the layout they were trained with)."""

    def __post_init__(self) -> None:
        if self.video_mode not in ("codec", "frames"):
            raise ValueError(f"media.video_mode={self.video_mode!r} is not codec or frames")
        if self.layout not in ("reference", "compact"):
            raise ValueError(f"media.layout={self.layout!r} is not reference or compact")


def load_image(path: str | Path, media: MediaConfig, spec: TowerSpec) -> PackedVisualTokens:
    return image_item(path, media.image, spec.patch_size, spec.spatial_merge)


def load_video(
    path: str | Path, media: MediaConfig, spec: TowerSpec, assets: str | Path | None = None
) -> PackedVisualTokens:
    if media.video_mode == "frames":
        size = media.frame_size or spec.frame_size
        if not media.cache_dir:
            return frames_item(path, media.frames, size, spec.patch_size)
        # A training epoch reads each video many times; decoding it each time cost more than
        # the tiny model's whole step. The frames are stored as the assets of a uniform
        # selection (same writer and reader), under their own prefix.
        from encoder.codec.pipeline import uniform_frames  # decodes: loads PyAV (see above)

        cfg = frames_config(media.frames, size, spec.patch_size)

        def select(video: Path, cfg: CodecConfig):
            return uniform_frames(video, media.frames, cfg)

        return _cached(path, media.cache_dir, cfg, select, prefix="frames-").to_packed()
    if "codec" not in spec.kinds:
        raise ValueError(f"tower {spec.name} cannot take codec video: set media.video_mode=frames")
    if assets:
        return read_assets(assets, expected=media.codec).to_packed()
    from encoder.codec.pipeline import select_patches  # decodes: loads PyAV (see above)

    if not media.cache_dir:
        return select_patches(path, media.codec).to_packed()
    return _cached(path, media.cache_dir, media.codec, select_patches, expected=True).to_packed()


def _cached(path, cache_dir: str, cfg: CodecConfig, select, prefix: str = "", expected=False):
    """`select(path, cfg)` through the asset cache (folder: prefix + the video's asset key);
    `expected`: the folder must hold what `cfg` selects."""
    path = Path(path).resolve()
    folder = Path(cache_dir) / f"{prefix}{asset_key(str(path), path, cfg)}"
    if not folder.is_dir():  # written atomically: a folder that exists is complete
        # Dataloader workers may select the same video at once: the first folder stays.
        write_assets(select(path, cfg), folder, keep_existing=True)
    return read_assets(folder, expected=cfg if expected else None)
