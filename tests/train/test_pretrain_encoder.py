"""`ovmllm pretrain-encoder` end to end on a generated dataset: coloured shapes and short videos,
labelled by a fixed random teacher (a seeded tiny OV-Encoder) through the concept bank
(extract → cluster → assign); the tiny encoder learns (the loss falls and held-out pooled
embeddings retrieve samples of the same top-1 concept well above chance); its export loads as
the tower of `ovmllm init` and in the probe's encoder loader; bad inputs fail with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image, ImageDraw

from encoder.codec.synthetic import write_synthetic_video
from encoder.concepts.assign import AssignConfig, assign
from encoder.concepts.cluster import ClusterConfig, cluster
from encoder.concepts.extract import ExtractConfig, extract
from encoder.concepts.store import read_arrow
from encoder.concepts.teacher import TeacherConfig
from encoder.onevision import OneVisionEncoderModel
from encoder.producers import ImagePolicy, image_item
from encoder.towers import TowerConfig
from encoder.towers.base import normalised_cells
from ovmllm.cli import main
from tests.conftest import REAL_DATA
from train.metrics import read_metrics
from train.pretrain.config import EncoderConfig, load_pretrain
from train.pretrain.encoder import PooledEncoder, load_encoder
from train.pretrain.recipe import pretrain

ROOT = Path(__file__).resolve().parents[2]
COLOURS = [(220, 40, 40), (40, 180, 60), (40, 80, 220), (230, 210, 40), (200, 60, 200),
           (40, 200, 200), (240, 140, 30), (250, 250, 250)]  # fmt: skip
SHAPES = ("square", "circle", "triangle")
TRAIN_IMAGES, HELDOUT_IMAGES, VIDEOS = 384, 96, 8
IMAGE_CLASSES, VIDEO_CLASSES, IMAGE_TOP_K = 32, 4, 4
BROKEN = "images/train_0005.png"  # labelled, then overwritten: the run must skip it


def _draw(path: Path, colour, shape: str, rng: np.random.Generator, size: int = 56) -> None:
    base = rng.integers(90, 150, size=(size, size, 1)) + rng.integers(-12, 12, (size, size, 3))
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    side = int(rng.integers(size // 2, size - 8))
    x, y = (int(v) for v in rng.integers(2, size - side - 2, size=2))
    box = (x, y, x + side, y + side)
    if shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "circle":
        draw.ellipse(box, fill=colour)
    else:
        draw.polygon([(x + side // 2, y), (x, y + side), (x + side, y + side)], fill=colour)
    image.save(path)


def _bank(list_file: Path, root: Path, out: Path, kind: str) -> None:
    teacher = TeacherConfig(tower=TowerConfig(name="onevision", size="tiny", select_layer=-1),
                            image_size=56, seed=7, device="cpu")  # fmt: skip
    extract(ExtractConfig(list=str(list_file), root=str(root), kind=kind, teacher=teacher), out,
            progress=False)  # fmt: skip


def labelled_data(base: Path) -> Path:
    """Media under base/media, labels under base/labels/{images,heldout,videos}; made once per
    session (the modules of these tests share it)."""
    data = base / "pretrain_data"
    if (data / "done").is_file():
        return data
    media = data / "media"
    (media / "images").mkdir(parents=True)
    (media / "videos").mkdir()
    rng = np.random.default_rng(0)
    for split, count in (("train", TRAIN_IMAGES), ("heldout", HELDOUT_IMAGES)):
        names = [f"images/{split}_{i:04d}.png" for i in range(count)]
        for name in names:
            _draw(media / name, COLOURS[rng.integers(len(COLOURS))], SHAPES[rng.integers(3)], rng)
        (media / f"{split}.txt").write_text("\n".join(names) + "\n")
    videos = [f"videos/{i}.mp4" for i in range(VIDEOS)]
    for i, name in enumerate(videos):
        # MPEG-4 part 2: the same bytes on every run (x264 wrote other bytes now and then, even
        # with one thread), and motion vectors for codec selection all the same
        write_synthetic_video(media / name, kind=("mover", "static")[i % 2], width=64, height=48,
                              frames=16, object_size=16, seed=i, codec="mpeg4")  # fmt: skip
    (media / "videos.txt").write_text("\n".join(videos) + "\n")
    bank = data / "bank"
    _bank(media / "train.txt", media, bank / "images", "image")
    _bank(media / "heldout.txt", media, bank / "heldout", "image")
    _bank(media / "videos.txt", media, bank / "videos", "video")
    for name, k, top_k in (("images", IMAGE_CLASSES, IMAGE_TOP_K), ("videos", VIDEO_CLASSES, 2)):
        cluster(bank / name, ClusterConfig(k=k, seed=0), bank / name / "centres.safetensors")
        assign(bank / name, bank / name / "centres.safetensors", AssignConfig(top_k=top_k),
               data / "labels" / name, progress=False)  # fmt: skip
    held_out = AssignConfig(top_k=IMAGE_TOP_K)
    assign(bank / "heldout", bank / "images" / "centres.safetensors", held_out,
           data / "labels" / "heldout", progress=False)  # fmt: skip
    (media / BROKEN).write_bytes(b"not a picture any more")
    (data / "done").write_text("")
    return data


def write_config(path: Path, data: Path, **changes) -> Path:
    """configs/pretrain/tiny.yaml on the generated data, with top-level keys replaced."""
    cfg = yaml.safe_load((ROOT / "configs" / "pretrain" / "tiny.yaml").read_text())
    media = str(data / "media")
    cfg["sources"] = [
        {"name": "images", "head": "image", "labels": str(data / "labels" / "images"),
         "root": media},
        {"name": "videos", "head": "video", "labels": str(data / "labels" / "videos"),
         "root": media},
    ]  # fmt: skip
    cfg["media"]["cache_dir"] = str(data / "cache")
    cfg["deepspeed"] = str(ROOT / cfg["deepspeed"])
    cfg.update(output_dir=str(path.parent / "run"), max_rejected_fraction=0.1, **changes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return labelled_data(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("learn")
    summary = pretrain(load_pretrain(write_config(folder / "tiny.yaml", data)))
    return folder / "run", summary


def _labels(folder: Path) -> dict[str, list[int]]:
    rows = [row for path in sorted(folder.glob("labels-*.arrow"))
            for row in read_arrow(path).to_pylist()]  # fmt: skip
    return {row["sample_id"]: row["labels"] for row in rows}


@torch.no_grad()
def pooled_embeddings(model: OneVisionEncoderModel, media: Path, ids: list[str]) -> torch.Tensor:
    encoder = PooledEncoder(model).eval()
    spec = encoder.spec
    items = [image_item(media / s, ImagePolicy(size=56), spec.patch_size) for s in ids]
    pixels = torch.cat([normalised_cells(item, spec, torch.float32) for item in items])
    cu = torch.arange(len(items) + 1, dtype=torch.int32) * items[0].lengths[0]
    positions = torch.cat([item.positions for item in items])
    return F.normalize(encoder(pixels, positions, cu), dim=1)


def retrieval(model: OneVisionEncoderModel, data: Path) -> tuple[float, float]:
    """(top-1 hit rate, chance): each held-out picture's nearest other held-out picture (cosine
    of the pooled embeddings) has its top-1 concept, against a random other picture's chance."""
    labels = _labels(data / "labels" / "heldout")
    ids = sorted(labels)
    top1 = torch.tensor([labels[s][0] for s in ids])
    same = top1[:, None] == top1[None, :]
    same.fill_diagonal_(False)
    chance = same.float().sum(1).div(len(ids) - 1).mean().item()
    emb = pooled_embeddings(model, data / "media", ids)
    similarity = emb @ emb.T
    similarity.fill_diagonal_(-2.0)
    return (top1[similarity.argmax(1)] == top1).float().mean().item(), chance


def test_the_loss_falls_and_held_out_embeddings_retrieve_their_concept(trained, data):
    run, summary = trained
    assert summary["steps"] == 120 and summary["export"] and summary["world_size"] == 1
    rows = read_metrics(run / "metrics.jsonl")
    losses = [r["loss_image"] for r in rows]  # the total jumps with the video head's presence
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.85 * first, losses
    # every view of the mix was drawn; the overwritten picture was skipped and recorded
    assert {"image", "codec", "frames", "collage"} <= {v for r in rows for v in r["views_rank0"]}
    assert set(summary["rejected"]) == {"media_failed"}
    rejected = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    assert rejected and all(r["id"] == BROKEN for r in rejected)
    hit, chance = retrieval(OneVisionEncoderModel.from_pretrained(summary["export"]), data)
    # The student starts as a random tiny OV-Encoder, much like the teacher: untrained, it
    # already finds neighbours of the same concept at ~8x chance (colour dominates both). The
    # learning is therefore shown against its own start too (measured: 0.51 -> 0.66).
    untrained, _ = retrieval(load_encoder(EncoderConfig(size="tiny"), seed=0), data)
    print(f"\nheld-out top-1 retrieval {hit:.3f} (untrained {untrained:.3f}), chance "
          f"{chance:.3f}: {hit / chance:.1f}x; image loss {first:.2f} -> {last:.2f} (mean of "
          "the first / last 5 steps)")  # fmt: skip
    assert hit >= 5 * chance and hit >= untrained + 0.05


def test_the_export_is_a_tower_for_init_and_an_encoder_for_the_probe(trained, tmp_path, capsys):
    from eval.probe.encoder import load_encoder

    export = Path(trained[1]["export"])
    config = json.loads((export / "config.json").read_text())
    assert config["model_type"] == "onevision_encoder"
    weights = OneVisionEncoderModel.from_pretrained(export).state_dict()
    assert "head.attention.in_proj_weight" in weights and "layernorm_post.weight" in weights
    probe = load_encoder(export, device="cpu")
    item = image_item(Image.new("RGB", (56, 56), "red"), ImagePolicy(size=56), 14)
    assert probe.features(item)[0].shape == (16, 128)
    if not (REAL_DATA / "tokenizers" / "qwen3").is_dir():
        pytest.skip("../shared/real_data (the Qwen3 tokenizer) is absent")
    from ovmllm.model import OVMLLMForCausalLM

    out = tmp_path / "model"
    tokenizer = REAL_DATA / "tokenizers" / "qwen3"
    code = main(["init", "--config", str(ROOT / "configs/model/tiny.yaml"), "--out", str(out),
                 f"tower.path={export}", f"tokenizer={tokenizer}"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    tower = OVMLLMForCausalLM.from_pretrained(out).tower.model.state_dict()
    assert all(torch.equal(tower[k], v) for k, v in weights.items())


def test_bad_inputs_fail_with_one_line_naming_them(data, tmp_path, capsys):
    path = write_config(tmp_path / "a.yaml", data)
    cfg = yaml.safe_load(path.read_text())
    cfg["sources"][0]["labels"] = str(tmp_path / "nowhere")
    (tmp_path / "missing.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["pretrain-encoder", str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "source 'images'" in err[0] and "nowhere" in err[0]
    assert main(["pretrain-encoder", str(path), "heads.video.num_classes=1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not below heads.video.num_classes=1" in err[0]
    cfg = yaml.safe_load(path.read_text())
    cfg["heads"]["ocr"] = {"loss": {"num_draw": 2}}
    path.write_text(yaml.safe_dump(cfg))
    assert main(["pretrain-encoder", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "heads.ocr: no source feeds it" in err[0]
    assert not (tmp_path / "run" / "checkpoints").exists()
