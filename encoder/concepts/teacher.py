"""Teachers of the concept bank: the model whose embeddings are clustered (PAPER.md section 4
uses MetaCLIP-H/14). Each turns a batch of RGB pictures into L2-normalised vectors.

- `tower`: any registered tower (`encoder.towers.TOWERS`, random init or `tower.path`); a
  picture is resized square to `image_size`, cut at the tower's patch size, and its embedding
  is the mean of the tower's output tokens at `tower.select_layer` (default -1, the last). One
  rule for every tower: towers hand out tokens, and not all have a pooling head.
- `transformers`: any transformers vision model folder, loaded with `AutoModel` and
  `AutoImageProcessor` (the folder's own preprocessing). The embedding is the model's own image
  embedding where it has one: `get_image_features` (CLIP, MetaCLIP, SigLIP: the projected
  embedding), else `image_embeds`, else `pooler_output`, else the mean of `last_hidden_state`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from encoder.packed import PackedVisualTokens
from encoder.producers import ImagePolicy, image_item
from encoder.towers import TowerConfig, VisionTower, build_tower
from encoder.towers.base import inference_device

TEACHER_SOURCES = ("tower", "transformers")


class TeacherError(ValueError):
    """A teacher that cannot be built; the message names the setting or folder and why."""


@dataclass
class TeacherConfig:
    source: str = "tower"
    """`tower` (a registered tower, set by tower.*) or `transformers` (a model folder: path)."""
    tower: TowerConfig = field(default_factory=lambda: TowerConfig(select_layer=-1))
    """The tower, when source=tower."""
    path: str = ""
    """A transformers vision model folder with its image processor, when source=transformers."""
    image_size: int = 224
    """Side in px pictures are resized to (square) for a tower; a transformers model uses its
    own image processor instead."""
    seed: int = 0
    """Seeds a random-init tower (empty tower.path), so a resumed run embeds alike."""
    device: str = "auto"
    """`auto` (the GPU in bf16 when there is one, else the CPU in fp32), `cpu`, `cuda:0`, ..."""

    def __post_init__(self) -> None:
        if self.source not in TEACHER_SOURCES:
            raise TeacherError(f"teacher.source={self.source!r} is not one of {TEACHER_SOURCES}")
        if self.source == "transformers" and not self.path:
            raise TeacherError("teacher.source=transformers needs teacher.path (a model folder)")
        if self.image_size < 1:
            raise TeacherError(f"teacher.image_size={self.image_size} must be >= 1")


def folder_fingerprint(folder: str | Path) -> str:
    """Digest of a model folder's config and the names, sizes and times of its weights: the
    embeddings of a bank are this teacher's."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TeacherError(f"{folder}: teacher model folder not found")
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.suffix in (".json", ".safetensors", ".bin"):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            if path.suffix == ".json":
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class TowerTeacher:
    def __init__(self, tower: VisionTower, cfg: TeacherConfig) -> None:
        self.tower, self.cfg = tower, cfg
        self.policy = ImagePolicy(mode="square", size=cfg.image_size)

    @classmethod
    def build(cls, cfg: TeacherConfig) -> TowerTeacher:
        device, dtype = inference_device(cfg.device)
        # random-init weights: the same on every (re)run, the caller's RNG left as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            tower = build_tower(cfg.tower)
        tower = tower.to(device=device, dtype=dtype).eval()
        return cls(tower.requires_grad_(False), cfg)

    @torch.inference_mode()
    def embed(self, images: list[Image.Image]) -> torch.Tensor:
        spec = self.tower.spec
        items = [image_item(im, self.policy, spec.patch_size, spec.spatial_merge) for im in images]
        tokens = PackedVisualTokens.concat(items).to_device(next(self.tower.parameters()).device)
        out = self.tower(tokens)
        counts = (out.cu_seqlens[1:] - out.cu_seqlens[:-1]).tolist()
        pooled = torch.stack([part.float().mean(0) for part in out.features.split(counts)])
        return F.normalize(pooled, dim=-1).cpu()


class TransformersTeacher:
    def __init__(self, model: torch.nn.Module, processor, cfg: TeacherConfig) -> None:
        self.model, self.processor, self.cfg = model, processor, cfg

    @classmethod
    def build(cls, cfg: TeacherConfig) -> TransformersTeacher:
        from transformers import AutoImageProcessor, AutoModel

        folder = Path(cfg.path)
        if not (folder / "config.json").is_file():
            raise TeacherError(f"{folder}: no config.json (not a transformers model folder)")
        try:
            processor = AutoImageProcessor.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise TeacherError(f"{folder}: no usable image processor ({exc})") from exc
        try:
            model = AutoModel.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise TeacherError(f"{folder}: not a loadable model ({exc})") from exc
        device, dtype = inference_device(cfg.device)
        model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        return cls(model, processor, cfg)

    @torch.inference_mode()
    def embed(self, images: list[Image.Image]) -> torch.Tensor:
        inputs = self.processor(images=images, return_tensors="pt")
        device, dtype = self.model.device, self.model.dtype
        inputs = {k: v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)
                  for k, v in inputs.items()}  # fmt: skip
        if hasattr(self.model, "get_image_features"):
            out = self.model.get_image_features(**inputs)
            pooled = out if isinstance(out, torch.Tensor) else out.pooler_output
        else:
            out = self.model(**inputs)
            # the first the model gives: projected embedding, pooled output, mean of tokens
            pooled = getattr(out, "image_embeds", None)
            if pooled is None:
                pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                pooled = out.last_hidden_state.mean(1)
        return F.normalize(pooled.float(), dim=-1).cpu()


Teacher = TowerTeacher | TransformersTeacher
TEACHERS = {"tower": TowerTeacher.build, "transformers": TransformersTeacher.build}


def build_teacher(cfg: TeacherConfig) -> Teacher:
    return TEACHERS[cfg.source](cfg)


def describe_teacher(cfg: TeacherConfig) -> dict:
    """What makes a teacher's embeddings what they are, from its config alone (no model is
    loaded): stored with a bank and compared when a run resumes."""
    if cfg.source == "transformers":
        return {"source": "transformers", "path": str(Path(cfg.path).resolve()),
                "fingerprint": folder_fingerprint(cfg.path)}  # fmt: skip
    description = {"source": "tower", "tower": asdict(cfg.tower), "image_size": cfg.image_size}
    if cfg.tower.path:
        description["tower"]["path"] = str(Path(cfg.tower.path).resolve())
        description["fingerprint"] = folder_fingerprint(cfg.tower.path)
    else:
        description["seed"] = cfg.seed
    return description


def teacher_key(description: dict) -> str:
    """A short digest of a teacher's description."""
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]
