"""Vision towers on tiny random weights: item kinds, widths, token counts, use of the grid."""

import numpy as np
import pytest
import torch
from PIL import Image

from encoder.codec import CodecConfig, select_patches
from encoder.packed import PackedVisualTokens
from encoder.producers import ImagePolicy, best_fit, frames_item, image_item
from encoder.towers import TowerConfig, build_tower
from tests.conftest import REAL_DATA


@pytest.fixture(scope="module")
def towers():
    torch.manual_seed(0)
    return {
        name: build_tower(TowerConfig(name=name)).eval()
        for name in ("onevision", "siglip2", "qwen3_vit")
    }


def picture() -> Image.Image:
    path = REAL_DATA / "images" / "natural" / "skimage_chelsea.png"
    if path.exists():
        return Image.open(path)
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (300, 451, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def frames(make_video):
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    return {p: frames_item(video.path, 4, 8 * p, p) for p in (14, 16)}


@torch.no_grad()
def test_each_tower_runs_on_images_and_frames_with_declared_counts(towers, frames):
    for name, tower in towers.items():
        p = tower.spec.patch_size
        image = image_item(picture(), ImagePolicy("square", size=6 * p), p)
        batch = PackedVisualTokens.concat([image, frames[p], tower.dummy_item()])
        out = tower(batch)
        assert out.features.shape[1] == tower.spec.output_width
        expected = [
            tower.spec.num_output_tokens(k, n, g)
            for k, n, g in zip(batch.kinds, batch.lengths, batch.grids, strict=True)
        ]
        assert (out.cu_seqlens[1:] - out.cu_seqlens[:-1]).tolist() == expected
        assert torch.isfinite(out.features).all(), name
    assert towers["qwen3_vit"].spec.num_output_tokens("frames", 0, (4, 8, 8)) == 2 * 4 * 4
    assert towers["qwen3_vit"].spec.num_output_tokens("image", 0, (1, 6, 6)) == 9
    assert towers["siglip2"].spec.num_output_tokens("frames", 0, (4, 8, 8)) == 256


@torch.no_grad()
def test_grid_towers_really_use_the_grid(towers, frames):
    for name in ("siglip2", "qwen3_vit"):
        tower = towers[name]
        item = frames[tower.spec.patch_size]
        base = tower(item).features
        t, h, w = item.grids[0]
        regridded = PackedVisualTokens(
            item.patches, item.positions, item.cu_seqlens, ["frames"], [(t, h // 2, w * 2)]
        )
        assert (tower(regridded).features - base).abs().max() > 1e-4, name
        # frames in another order: a grid tower that looked at frames one by one would only
        # permute its outputs; Qwen3-ViT pairs frames in time, so its outputs change
        order = torch.arange(t * h * w).view(t, h * w)[[1, 0, 3, 2]].flatten()
        swapped = PackedVisualTokens(
            item.patches[order], item.positions, item.cu_seqlens, ["frames"], item.grids
        )
        if tower.spec.temporal_patch > 1:
            assert (tower(swapped).features - base).abs().max() > 1e-4
        else:
            n = h * w
            torch.testing.assert_close(
                tower(swapped).features[:n], base[n : 2 * n], atol=1e-4, rtol=1e-4
            )


@torch.no_grad()
def test_onevision_tower_takes_codec_items_and_grid_towers_refuse_them(towers, make_video):
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    codec = select_patches(video.path, CodecConfig(budget=1500)).to_packed()
    out = towers["onevision"](codec)
    assert out.features.shape == (1500, 128)
    for name in ("siglip2", "qwen3_vit"):
        with pytest.raises(ValueError, match="does not accept 'codec'"):
            towers[name](codec)


def test_per_cell_resize_never_mixes_neighbours(towers):
    """A codec cell of 16 px becomes a 14-px patch on its own: a black cell beside a white one
    stays black."""
    from encoder.towers.base import normalised_cells

    patches = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    patches[1] = 255
    item = PackedVisualTokens(
        patches,
        torch.zeros(2, 3, dtype=torch.int32),
        torch.tensor([0, 2], dtype=torch.int32),
        ["codec"],
        [None],
    )
    cells = normalised_cells(item, towers["onevision"].spec, torch.float32)
    mean = torch.tensor(towers["onevision"].spec.mean).view(3, 1, 1)
    std = torch.tensor(towers["onevision"].spec.std).view(3, 1, 1)
    torch.testing.assert_close(cells[0], (-mean / std).expand(3, 14, 14))
    torch.testing.assert_close(cells[1], ((1 - mean) / std).expand(3, 14, 14))


def test_image_policies():
    assert best_fit(300, 600, [(574, 1120), (1120, 574), (1120, 1120)]) == (574, 1120)
    assert best_fit(1000, 1000, [(574, 1120), (1120, 574), (1120, 1120)]) == (1120, 1120)
    item = image_item(picture(), ImagePolicy("best_fit", resolutions=[[140, 280], [280, 140]]), 14)
    assert item.grids == [(1, 10, 20)] or item.grids == [(1, 20, 10)]
    with pytest.raises(ValueError, match="not a readable image"):
        image_item(REAL_DATA / "missing.png", ImagePolicy(), 14)


@torch.no_grad()
def test_towers_load_their_weights_from_a_folder(towers, frames, tmp_path):
    for name, tower in towers.items():
        tower.model.save_pretrained(tmp_path / name)
        again = build_tower(TowerConfig(name=name, path=str(tmp_path / name))).eval()
        item = frames[tower.spec.patch_size]
        torch.testing.assert_close(again(item).features, tower(item).features)
    with pytest.raises(ValueError, match="not one of"):
        build_tower(TowerConfig(name="clip"))


def test_each_tower_names_lora_targets_that_are_linear_layers_of_its_blocks(towers):
    for name, tower in towers.items():
        linear = [n for n, m in tower.named_modules() if isinstance(m, torch.nn.Linear)]
        for target in tower.spec.lora_targets:  # PEFT matches a target as a name suffix
            hits = [n for n in linear if n == target or n.endswith(f".{target}")]
            assert hits, (name, target)
            assert all(".layers." in n or ".blocks." in n or "head" in n for n in hits), hits
