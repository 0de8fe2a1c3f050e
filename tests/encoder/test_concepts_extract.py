"""`extract`: teacher embeddings (registered towers, transformers folders) of images and videos,
written in shards that a rerun resumes."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from encoder.codec.plan import sample_indices
from encoder.concepts.extract import ExtractConfig, extract
from encoder.concepts.media import uniform_video_frames
from encoder.concepts.store import Bank, StoreError, read_tensor, shard_path
from encoder.concepts.teacher import TeacherConfig, TeacherError, build_teacher
from encoder.producers import image_item
from encoder.towers import TowerConfig
from tests.conftest import REAL_DATA


def tiny_teacher(**overrides) -> TeacherConfig:
    tower = TowerConfig(name="onevision", size="tiny", select_layer=-1)
    return TeacherConfig(tower=tower, image_size=56, seed=7, **overrides)


@pytest.fixture
def images(tmp_path):
    """Five listed entries: three pictures, a file that is no image, and a missing one."""
    root = tmp_path / "media"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 255, (40 + 10 * i, 60, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{i}.png")
    (root / "broken.png").write_bytes(b"not an image")
    names = ["img0.png", "broken.png", "img1.png", "missing.jpg", "img2.png"]
    (root / "list.txt").write_text("# pictures\n" + "\n".join(names) + "\n")
    return root


def test_images_are_embedded_and_failures_recorded(images, tmp_path):
    cfg = ExtractConfig(list=str(images / "list.txt"), teacher=tiny_teacher(), shard_size=2)
    summary = extract(cfg, tmp_path / "bank", progress=False)
    assert (summary.samples, summary.embedded, summary.failed) == (5, 3, 2)
    assert (summary.shards_written, summary.shards_skipped, summary.dim) == (3, 0, 128)
    bank = Bank(tmp_path / "bank")
    index = [bank.index(s).to_pylist() for s in range(3)]
    assert [row["sample_id"] for shard in index for row in shard] == [
        "img0.png", "broken.png", "img1.png", "missing.jpg", "img2.png"]  # fmt: skip
    assert [row["row"] for shard in index for row in shard] == [0, -1, 0, -1, 0]
    assert "broken.png: not a readable image" in index[0][1]["error"]
    assert "missing.jpg" in index[1][1]["error"] and index[0][0]["error"] is None
    ids, rows = bank.embeddings(0)
    assert ids == ["img0.png"] and rows.dtype == torch.float32 and rows.shape == (1, 128)
    # each row is the mean of the tower's output tokens, unit-normalised
    teacher = build_teacher(tiny_teacher())
    picture = Image.open(images / "img0.png").convert("RGB")
    torch.testing.assert_close(rows, teacher.embed([picture]))
    tokens = teacher.tower(image_item(picture, teacher.policy, 14)).features
    torch.testing.assert_close(rows[0], F.normalize(tokens.mean(0), dim=0))


def test_a_rerun_resumes_only_the_missing_shards(images, tmp_path):
    cfg = ExtractConfig(list=str(images / "list.txt"), teacher=tiny_teacher(), shard_size=2)
    out = tmp_path / "bank"
    extract(cfg, out, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    first = Bank(out).embeddings(1)[1]
    again = extract(cfg, out, progress=False)
    assert (again.shards_written, again.shards_skipped, again.dim) == (0, 3, 128)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    shard_path(out, "index", 1, ".arrow").unlink()  # as if killed before the commit mark
    resumed = extract(cfg, out, progress=False)
    assert (resumed.shards_written, resumed.shards_skipped, resumed.embedded) == (1, 2, 1)
    torch.testing.assert_close(Bank(out).embeddings(1)[1], first)  # seeded random weights
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    other = ExtractConfig(list=cfg.list, teacher=tiny_teacher(), shard_size=3)
    with pytest.raises(StoreError, match="shard_size"):
        extract(other, out, progress=False)


def test_a_video_is_the_unit_concatenation_of_its_8_uniform_frames(make_video, tmp_path):
    video = make_video("clip.mp4", kind="mover", width=64, height=48, frames=20)
    (tmp_path / "list.txt").write_text(f"{video.path.name}\n")
    cfg = ExtractConfig(list=str(tmp_path / "list.txt"), root=str(video.path.parent),
                        kind="video", teacher=tiny_teacher())  # fmt: skip
    summary = extract(cfg, tmp_path / "bank", progress=False)
    assert (summary.embedded, summary.dim) == (1, 8 * 128)
    bank = Bank(tmp_path / "bank")
    assert bank.manifest["frames"] == 8 and bank.manifest["kind"] == "video"
    row = bank.embeddings(0)[1][0]
    frames = uniform_video_frames(video.path)
    per_frame = build_teacher(tiny_teacher()).embed(frames)
    torch.testing.assert_close(row, F.normalize(per_frame.flatten(), dim=0))
    torch.testing.assert_close(row.view(8, 128).norm(dim=1), torch.full((8,), 8**-0.5))
    # the frames are those at floor(linspace(0, N - 1, 8)), in order
    with av.open(str(video.path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    wanted = sample_indices(len(decoded), 8)
    for frame, index in zip(frames, wanted, strict=True):
        np.testing.assert_array_equal(np.asarray(frame), decoded[index])


def test_an_undecodable_video_is_recorded(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "list.txt").write_text("bad.mp4\n")
    cfg = ExtractConfig(list=str(tmp_path / "list.txt"), kind="video", teacher=tiny_teacher())
    summary = extract(cfg, tmp_path / "bank", progress=False)
    assert (summary.embedded, summary.failed) == (0, 1)
    assert "bad.mp4" in Bank(tmp_path / "bank").index(0).to_pylist()[0]["error"]
    assert Bank(tmp_path / "bank").embeddings(0)[0] == []


@pytest.mark.parametrize("name", ["siglip2", "qwen3_vit"])
def test_every_registered_tower_can_teach(images, name):
    tower = TowerConfig(name=name, size="tiny", select_layer=-1)
    teacher = build_teacher(TeacherConfig(tower=tower, image_size=64))
    pictures = [Image.open(images / f"img{i}.png") for i in range(3)]
    out = teacher.embed(pictures)
    assert out.shape == (3, teacher.tower.spec.output_width)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


def _save_vit(folder):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, image_size=32, patch_size=8)  # fmt: skip
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def _save_clip(folder):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    config = CLIPConfig(vision_config={**small, "image_size": 32, "patch_size": 8},
                        text_config=small, projection_dim=16)  # fmt: skip
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32).save_pretrained(folder)


@pytest.mark.parametrize(("save", "dim"), [(_save_vit, 32), (_save_clip, 16)])
def test_a_transformers_folder_teaches_with_its_own_embedding(images, tmp_path, save, dim):
    from transformers import AutoImageProcessor, AutoModel

    folder = tmp_path / "teacher"
    save(folder)
    cfg = ExtractConfig(list=str(images / "list.txt"),
                        teacher=TeacherConfig(source="transformers", path=str(folder)))  # fmt: skip
    summary = extract(cfg, tmp_path / "bank", progress=False)
    assert (summary.embedded, summary.dim) == (3, dim)
    ids, rows = Bank(tmp_path / "bank").embeddings(0)
    model, processor = AutoModel.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)
    inputs = processor(images=[Image.open(images / i).convert("RGB") for i in ids],
                       return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        if dim == 16:  # CLIP: the projected image embedding
            expected = model.get_image_features(**inputs).pooler_output
        else:
            expected = model(**inputs).pooler_output
    torch.testing.assert_close(rows, F.normalize(expected, dim=-1), atol=1e-5, rtol=1e-4)


def test_bad_teachers_are_named(tmp_path):
    with pytest.raises(TeacherError, match=r"needs teacher\.path"):
        TeacherConfig(source="transformers")
    with pytest.raises(TeacherError, match="source"):
        TeacherConfig(source="hub")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TeacherError, match=r"no config\.json"):
        build_teacher(TeacherConfig(source="transformers", path=str(tmp_path / "empty")))


def test_embeddings_file_metadata(images, tmp_path):
    cfg = ExtractConfig(list=str(images / "list.txt"), teacher=tiny_teacher())
    extract(cfg, tmp_path / "bank", progress=False)
    tensor, meta = read_tensor(shard_path(tmp_path / "bank", "embeddings", 0, ".safetensors"),
                               "embeddings")  # fmt: skip
    assert meta == {"format": "1", "shard": "0", "dim": "128"} and tensor.shape == (3, 128)


def test_batching_and_decode_workers_change_nothing(images, tmp_path):
    runs = {}
    for name, batch, workers in (("a", 1, 0), ("b", 3, 1)):
        cfg = ExtractConfig(list=str(images / "list.txt"), teacher=tiny_teacher(), shard_size=2,
                            batch_size=batch, workers=workers)  # fmt: skip
        extract(cfg, tmp_path / name, progress=False)
        runs[name] = [Bank(tmp_path / name).embeddings(s) for s in range(3)]
    for (ids_a, rows_a), (ids_b, rows_b) in zip(runs["a"], runs["b"], strict=True):
        assert ids_a == ids_b
        torch.testing.assert_close(rows_a, rows_b, atol=1e-5, rtol=1e-4)


def test_real_videos_and_pictures(real_videos, tmp_path):
    pictures = sorted((REAL_DATA / "images" / "natural").glob("*.*"))[:3]
    (tmp_path / "videos.txt").write_text("\n".join(p.name for p in real_videos) + "\n")
    (tmp_path / "images.txt").write_text("\n".join(p.name for p in pictures) + "\n")
    videos = ExtractConfig(list=str(tmp_path / "videos.txt"), root=str(real_videos[0].parent),
                           kind="video", teacher=tiny_teacher())  # fmt: skip
    summary = extract(videos, tmp_path / "videos", progress=False)
    assert (summary.embedded, summary.failed, summary.dim) == (len(real_videos), 0, 8 * 128)
    stills = ExtractConfig(list=str(tmp_path / "images.txt"), root=str(pictures[0].parent),
                           teacher=tiny_teacher())  # fmt: skip
    summary = extract(stills, tmp_path / "images", progress=False)
    assert (summary.embedded, summary.failed, summary.dim) == (3, 0, 128)
    rows = Bank(tmp_path / "videos").embeddings(0)[1]
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(len(real_videos)))
    assert not torch.allclose(rows[0], rows[1])  # two different clips
