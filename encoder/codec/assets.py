"""Asset folder of one video's selection, compatible with the reference's LLaVA pipeline.

Written atomically (`encoder/files.py`: a folder that exists is complete), named by
`asset_key` where a cache or a dataset's precompute keeps many:
- `patches.npy`  uint8 [K, 3, p, p], lossless: what this project reads back, so cached assets
  and online selection give identical pixels;
- `frame_ids.npy` int32 [T]; `positions_thw.npy` int32 [K, 3] (t = index into the T frames);
- `visible_indices.npy` int64 [K]: t * hb * wb + h * wb + w;
- `mosaic_000.jpg`, ...: hb x wb cells each, filled row-major with the patches in (t, h, w)
  order (under the `first` policy mosaic 0 is the whole first frame); the last mosaic is
  zero-filled past K;
- `meta.json`: T, canvas, patch, hb, wb, K, frame ids, policy, compensation, residual mode,
  pad box, source codec, motion source, timings, and `settings` (`CodecConfig.
  selection_settings`), which `read_assets(folder, expected=cfg)` compares with `cfg`.

`read_assets` also accepts the reference's training layout: its JPEG images plus
`positions_thw.npy` (patches are then cut from the JPEGs, so they are lossy).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from encoder.codec.config import CodecConfig
from encoder.codec.errors import AssetFormatError, AssetSettingsError
from encoder.codec.selection import PatchSelection, codec_timeline
from encoder.files import atomic_dir

JPEG_QUALITY = 95  # the reference writes its mosaics at quality 95
REFERENCE_TIMELINE = 64  # the reference always samples 64 frames


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def mosaics(selection: PatchSelection) -> list[np.ndarray]:
    """The patches laid row-major into hb x wb mosaics: list of [hb * p, wb * p, 3] uint8."""
    hb, wb = selection.grid
    p = selection.patches.shape[-1]
    per = hb * wb
    out = []
    for start in range(0, selection.num_patches, per):
        chunk = selection.patches[start : start + per]
        cells = np.zeros((per, 3, p, p), np.uint8)
        cells[: len(chunk)] = chunk
        image = cells.reshape(hb, wb, 3, p, p).transpose(0, 3, 1, 4, 2).reshape(hb * p, wb * p, 3)
        out.append(image)
    return out


def write_assets(
    selection: PatchSelection, folder: str | Path, keep_existing: bool = False
) -> Path:
    """Write the asset folder; replaces an existing one only once the new one is complete.
    `keep_existing`: an existing folder wins instead (a cache that workers fill at once)."""
    with atomic_dir(folder, keep_existing=keep_existing) as tmp:
        np.save(tmp / "patches.npy", selection.patches)
        np.save(tmp / "frame_ids.npy", selection.frame_ids.astype(np.int32))
        np.save(tmp / "positions_thw.npy", selection.positions.astype(np.int32))
        np.save(tmp / "visible_indices.npy", selection.visible_indices)
        for i, image in enumerate(mosaics(selection)):
            Image.fromarray(image).save(tmp / f"mosaic_{i:03d}.jpg", quality=JPEG_QUALITY)
        hb, wb = selection.grid
        meta = dict(selection.meta)
        meta.update(
            kind=selection.kind,
            T=len(selection.frame_ids),
            patch=int(selection.patches.shape[-1]),
            hb=hb,
            wb=wb,
            K=selection.num_patches,
            frame_ids=selection.frame_ids,
            frame_times=selection.frame_times,
        )
        (tmp / "meta.json").write_text(json.dumps(_jsonable(meta), indent=1))
    return Path(folder)


def asset_key(video_id: str, video: Path, cfg: CodecConfig) -> str:
    """The name of a video's asset folder: a hash of how the video is named (`video_id`), its
    size and mtime, and the codec settings, so a changed video or setting gets new assets.
    The default policy (saliency, no controls) is left out of the hash, so the folders made
    before policies existed keep their names."""
    stat = video.stat()
    codec = asdict(cfg)
    if codec["policy"] == "saliency" and not codec["controls"]:
        del codec["policy"], codec["controls"]
    payload = json.dumps(
        {
            "video": video_id,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "codec": codec,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _load(folder: Path, name: str, dtype, ndim: int) -> np.ndarray:
    path = folder / name
    try:
        array = np.load(path)
    except (OSError, ValueError) as exc:
        raise AssetFormatError(path, f"unreadable ({exc})") from exc
    if array.ndim != ndim:
        raise AssetFormatError(path, f"expected {ndim} dimensions, got shape {array.shape}")
    return array.astype(dtype, copy=False)


def read_assets(folder: str | Path, expected: CodecConfig | None = None) -> PatchSelection:
    """Load an asset folder written by `write_assets`, or the reference's training layout.
    With `expected`, the folder must hold the selection those settings make
    (`AssetSettingsError` otherwise, see `check_settings`)."""
    selection = _read(Path(folder))
    if expected is not None:
        check_settings(selection, expected, folder)
    return selection


def check_settings(selection: PatchSelection, cfg: CodecConfig, folder: str | Path) -> None:
    """Raise `AssetSettingsError` naming the first setting where the assets differ from `cfg`:
    the shape of the selection (T, K, patch, grid) always; every setting of
    `CodecConfig.selection_settings` where the meta records them (the reference's layout
    records none)."""
    hb, _ = selection.grid
    found = {
        "kind": selection.kind,
        "frames": len(selection.frame_ids),
        "K": selection.num_patches,
        "patch": int(selection.patches.shape[-1]),
        "grid": hb,
    }
    wanted = {"kind": "codec", "frames": cfg.frames, "K": cfg.num_patches}
    wanted.update(patch=cfg.patch, grid=cfg.grid)
    settings = selection.meta.get("settings")
    if settings is not None:
        # meta written before policies existed records neither: those were saliency top-K
        found.update(policy="saliency", controls=[])
        found.update(settings)
        wanted.update(cfg.selection_settings())
    elif selection.meta.get("layout") != "reference":
        raise AssetSettingsError(
            folder, "meta.json records no codec settings (written by an older version): recompute"
        )
    for key, value in wanted.items():
        if found.get(key) != value:
            raise AssetSettingsError(
                folder,
                f"made with codec {key}={found.get(key)!r}, but the model's codec settings have "
                f"{key}={value!r}: recompute the assets with the model's settings",
            )


def _read(folder: Path) -> PatchSelection:
    if not folder.is_dir():
        raise AssetFormatError(folder, "asset folder not found")
    if not (folder / "positions_thw.npy").exists():
        raise AssetFormatError(folder, "no positions_thw.npy")
    if not (folder / "patches.npy").exists():
        return _read_reference_layout(folder)
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        raise AssetFormatError(folder, "patches.npy without meta.json")
    meta = json.loads(meta_path.read_text())
    patches = _load(folder, "patches.npy", np.uint8, 4)
    positions = _load(folder, "positions_thw.npy", np.int32, 2)
    frame_ids = _load(folder, "frame_ids.npy", np.int32, 1)
    if positions.shape != (len(patches), 3):
        raise AssetFormatError(folder, f"{len(patches)} patches but positions {positions.shape}")
    hb, wb = int(meta["hb"]), int(meta["wb"])
    _check_positions(folder, positions, len(frame_ids), hb, wb)
    frame_times = np.asarray(meta.get("frame_times", codec_timeline(len(frame_ids))), np.int32)
    return PatchSelection(
        kind=meta.get("kind", "codec"),
        frame_ids=frame_ids,
        positions=positions,
        patches=patches,
        frame_times=frame_times,
        grid=(hb, wb),
        meta=meta,
    )


def _check_positions(folder: Path, positions: np.ndarray, t: int, hb: int, wb: int) -> None:
    bad = (positions < 0).any(axis=1) | (positions[:, 0] >= t)
    bad |= (positions[:, 1] >= hb) | (positions[:, 2] >= wb)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise AssetFormatError(
            folder,
            f"position row {row} {positions[row].tolist()} is outside the {t}x{hb}x{wb} grid",
        )


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _read_reference_layout(folder: Path) -> PatchSelection:
    """The reference's training layout: N JPEG images of g x g cells + positions_thw.npy.

    Images are read in natural order of their names. One known variant stores no positions
    for the first image (the whole first frame); those 1 x g x g rows are restored.
    """
    images = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")),
        key=_natural_key,
    )
    if not images:
        raise AssetFormatError(folder, "no patches.npy and no JPEG/PNG images")
    positions = _load(folder, "positions_thw.npy", np.int32, 2).reshape(-1, 3)
    pixels = [np.asarray(Image.open(p).convert("RGB")) for p in images]
    size = pixels[0].shape[0]
    if any(px.shape != (size, size, 3) for px in pixels):
        raise AssetFormatError(folder, "images are not all the same square size")
    rows, grid = len(positions), None
    for filled in (len(images), len(images) - 1):  # every image, or all but the first
        side = round((rows / max(filled, 1)) ** 0.5)
        if filled and side * side * filled == rows and size % side == 0:
            grid, per_image = side, side * side
            break
    if grid is None:
        raise AssetFormatError(folder, f"{rows} positions do not fill {len(images)} square grids")
    if filled == len(images) - 1:  # first image is frame 0 whole, stored without positions
        hh, ww = np.divmod(np.arange(per_image), grid)
        first = np.stack([np.zeros_like(hh), hh, ww], axis=1).astype(np.int32)
        positions = np.concatenate([first, positions])
    p = size // grid
    cells = [
        px.reshape(grid, p, grid, p, 3).transpose(0, 2, 4, 1, 3).reshape(-1, 3, p, p)
        for px in pixels
    ]
    patches = np.ascontiguousarray(np.concatenate(cells)[: len(positions)])
    frame_ids_path = folder / "frame_ids.npy"
    if frame_ids_path.exists():
        frame_ids = _load(folder, "frame_ids.npy", np.int32, 1)
    else:  # the reference's layout does not record them
        frame_ids = np.full(REFERENCE_TIMELINE, -1, np.int32)
    _check_positions(folder, positions, len(frame_ids), grid, grid)
    return PatchSelection(
        kind="codec",
        frame_ids=frame_ids,
        positions=positions,
        patches=patches,
        frame_times=codec_timeline(len(frame_ids)),
        grid=(grid, grid),
        meta={"layout": "reference", "images": [p.name for p in images]},
    )
