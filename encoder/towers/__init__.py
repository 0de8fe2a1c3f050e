"""Vision towers behind one interface (`VisionTower`), picked by name from a registry.

| tower | item kinds | output tokens per item |
|---|---|---|
| `onevision` | image, frames, codec | one per patch |
| `siglip2` | image, frames (full grids) | one per patch (T x H x W) |
| `qwen3_vit` | image, frames (full grids, H and W even) | ceil(T/2) x H/2 x W/2 (own merger) |
"""

from __future__ import annotations

from encoder.towers.base import TowerConfig, TowerOutput, TowerSpec, VisionTower
from encoder.towers.onevision import OneVisionTower
from encoder.towers.qwen3_vit import Qwen3VitTower
from encoder.towers.siglip2 import Siglip2Tower

TOWERS: dict[str, type[VisionTower]] = {
    "onevision": OneVisionTower,
    "siglip2": Siglip2Tower,
    "qwen3_vit": Qwen3VitTower,
}


def build_tower(cfg: TowerConfig) -> VisionTower:
    if cfg.name not in TOWERS:
        raise ValueError(f"tower.name={cfg.name!r} is not one of {', '.join(TOWERS)}")
    return TOWERS[cfg.name].build(cfg)


__all__ = ["TOWERS", "TowerConfig", "TowerOutput", "TowerSpec", "VisionTower", "build_tower"]
