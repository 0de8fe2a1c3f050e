"""The model side needs no video library: with PyAV unimportable, the model and the towers
import, and a tower runs on an image and on precomputed codec assets (only decoding needs av)."""

import subprocess
import sys
from pathlib import Path

from encoder.codec import CodecConfig, select_patches, write_assets

REPO = Path(__file__).resolve().parents[2]

WITHOUT_PYAV = """
import sys
sys.modules["av"] = None  # `import av` now raises ImportError, as on a machine without PyAV
import numpy as np
import torch
from PIL import Image

import encoder.towers
import ovmllm.model
from encoder.codec import CodecConfig
from encoder.packed import PackedVisualTokens
from encoder.producers import ImagePolicy, image_item
from encoder.towers import TowerConfig, build_tower
from ovmllm.media import MediaConfig, load_video

tower = build_tower(TowerConfig(name="onevision")).eval()
picture = Image.fromarray(np.full((60, 80, 3), 128, np.uint8))
image = image_item(picture, ImagePolicy(size=56), tower.spec.patch_size)
media = MediaConfig(codec=CodecConfig(canvas="crop"))  # the settings the assets were made with
codec = load_video("unused.mp4", media, tower.spec, assets=sys.argv[1])
with torch.no_grad():
    out = tower(PackedVisualTokens.concat([image, codec]))
assert torch.isfinite(out.features).all()
assert sys.modules["av"] is None  # nothing imported av on the way
"""


def test_model_and_tower_run_without_pyav(make_video, tmp_path):
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    assets = write_assets(select_patches(video.path, CodecConfig(canvas="crop")), tmp_path / "a")
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYAV, str(assets)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
