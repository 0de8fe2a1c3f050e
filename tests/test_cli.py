"""The `ovmllm` command end to end (in process), and the config loader behind it."""

import json
import shutil

import pytest
from PIL import Image

from encoder.codec import read_assets
from encoder.codec.config import CodecConfig
from ovmllm.cli import main
from ovmllm.config import ConfigError, load_config, write_config


def test_codec_select_writes_assets_and_prints_a_summary(make_video, tmp_path, capsys):
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    flags = ["--frames", "32", "--budget", "900", "--canvas", "crop", "--compensate", "affine"]
    code = main(
        ["codec", "select", str(video.path), "--out", str(tmp_path / "a"), *flags, "fusion=max"]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["K"] == 900 and summary["motion_source"] == "exported"
    selection = read_assets(tmp_path / "a")
    meta = selection.meta
    assert (meta["T"], meta["compensation"], meta["fusion"], meta["patch"]) == (
        32,
        "affine",
        "max",
        14,
    )


def test_codec_show_draws_a_sheet(make_video, tmp_path, capsys):
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    assert (
        main(["codec", "show", str(video.path), "--out", str(tmp_path / "s.png"), "--frames", "16"])
        == 0
    )
    assert Image.open(tmp_path / "s.png").size == (8 * 192, 2 * 192)


def test_bad_input_and_bad_keys_exit_nonzero(tmp_path, capsys):
    assert main(["codec", "select", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "x")]) == 1
    assert "file not found" in capsys.readouterr().err
    assert main(["codec", "select", str(tmp_path / "none.mp4"), "--out", "x", "frams=3"]) == 1
    assert "frams" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["codec", "select", "v.mp4", "--out", "x", "--bogus"])


def test_config_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("canvas: crop\nbudget: 512\nfull_frame: none\n")
    cfg = load_config(CodecConfig, path, ["budget=1024", "compensate=similarity"])
    assert (cfg.canvas, cfg.canvas_size, cfg.patch, cfg.num_patches) == ("crop", 224, 14, 1024)
    written = write_config(cfg, tmp_path / "out" / "resolved.yaml")
    assert load_config(CodecConfig, written) == cfg
    with pytest.raises(ConfigError, match="frames"):
        load_config(CodecConfig, None, ["frames=many"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(CodecConfig, tmp_path / "missing.yaml")


def test_codec_precompute_from_the_command_line(make_video, tmp_path, capsys):

    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    shutil.copy(video.path, tmp_path / "clip.mp4")
    rows = [{"id": 1, "video": "clip.mp4", "conversations": []}, {"id": 2, "video": "gone.mp4"}]
    (tmp_path / "data.json").write_text(json.dumps(rows))
    data, out = str(tmp_path / "data.json"), str(tmp_path / "assets")
    flags = ["--config", "configs/codec/probe.yaml", "--frames", "16"]
    args = ["codec", "precompute", data, "--out", out, *flags, "codec.budget=300"]
    assert main(args) == 3  # one video failed, recorded
    summary = json.loads(capsys.readouterr().out)
    assert (summary["computed"], summary["failed"]) == (1, 1)
    meta = json.loads(next((tmp_path / "assets").glob("*/meta.json")).read_text())
    assert (meta["T"], meta["K"], meta["canvas"]["mode"]) == (
        16,
        300,
        "crop",
    )  # YAML, flag, override


def test_the_deepspeed_launchers_local_rank_flag_is_dropped():
    from ovmllm.cli import _without_local_rank

    argv = ["--local_rank=1", "train", "stage.yaml", "--local_rank", "1", "max_steps=2"]
    assert _without_local_rank(argv) == ["train", "stage.yaml", "max_steps=2"]


def test_config_shows_each_field_with_its_documentation(capsys):
    assert main(["config", "model", "configs/model/tiny.yaml", "chat.max_length=77"]) == 0
    text = capsys.readouterr().out
    assert "  # Tokens per sample: longer ones are cut" in text and "  max_length: 77" in text
    assert main(["config", "processor", "media.frames=3"]) == 0
    assert "  frames: 3\n" in capsys.readouterr().out
    assert main(["config", "stage"]) == 1
    assert "YAML file" in capsys.readouterr().err
    for kind, override in {"codec": "frames=8", "toydata": "seed=1"}.items():
        assert main(["config", kind, override]) == 0  # the other kinds resolve too
