"""The assembled model on tiny random configs: losses, media scatter, generation, save/load —
for two LLM families (Qwen3 and Llama)."""

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, Qwen3Config

from encoder.packed import PackedVisualTokens
from encoder.producers import ImagePolicy, image_item
from ovmllm.chat_processor import ChatProcessor
from ovmllm.model import OVMLLMConfig, OVMLLMForCausalLM
from tests.conftest import REAL_DATA

QWEN3 = REAL_DATA / "tokenizers" / "qwen3"
PICTURE = REAL_DATA / "images" / "natural" / "skimage_chelsea.png"


@pytest.fixture(scope="module")
def processor():
    if not QWEN3.is_dir():
        pytest.skip("../shared/real_data is absent")
    return ChatProcessor(AutoTokenizer.from_pretrained(QWEN3))


def tiny_llm(family: str, vocab: int):
    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1)  # fmt: skip
    if family == "qwen3":
        return Qwen3Config(head_dim=32, **common)
    return LlamaConfig(**common)


@pytest.fixture(scope="module", params=["qwen3", "llama"])
def model(request, processor):
    torch.manual_seed(0)
    config = OVMLLMConfig(
        llm_config=tiny_llm(request.param, len(processor.tokenizer)),
        vision_token_ids=processor.token_ids,
    )
    return OVMLLMForCausalLM(config).eval()


def sample(processor, question="<image>\nWhat is it?", answer="A cat on a bed."):
    picture = image_item(PICTURE, ImagePolicy(size=56), 14)  # 4 x 4 patches → 16 tokens
    encoded = processor.encode(
        [{"from": "human", "value": question}, {"from": "gpt", "value": answer}], [("image", 16)]
    )
    return torch.tensor([encoded.input_ids]), torch.tensor([encoded.labels]), picture


def test_loss_sum_and_token_count(model, processor):
    ids, labels, picture = sample(processor)
    out = model(ids, labels=labels, visual=picture)
    supervised = int((labels[:, 1:] != -100).sum())
    assert int(out.num_tokens) == supervised > 0
    torch.testing.assert_close(out.loss, out.loss_sum / supervised)
    # the head runs on supervised positions only; the loss is the one of the full logits
    full = model(ids, visual=picture).logits
    expected = torch.nn.functional.cross_entropy(
        full[0, :-1].float(), labels[0, 1:], ignore_index=-100, reduction="sum"
    )
    torch.testing.assert_close(out.loss_sum, expected)
    assert out.logits.shape == (supervised, full.shape[-1])


def test_visual_features_land_on_the_placeholders(model, processor):
    ids, _, picture = sample(processor)
    embeds = model.embed(ids, picture)
    slots = torch.isin(ids, torch.tensor(model.media_token_ids))[0]
    feats = model.visual_features(picture)
    torch.testing.assert_close(embeds[0, slots], feats)
    text = model.get_input_embeddings()(ids)[0]
    torch.testing.assert_close(embeds[0, ~slots], text[~slots])
    with pytest.raises(ValueError, match="placeholders"):
        model(ids)  # placeholders but no media
    two = PackedVisualTokens.concat([picture, picture])
    with pytest.raises(ValueError, match="visual tokens for"):
        model(ids, visual=two)


def test_kv_cache_generation_equals_no_cache(model, processor):
    picture = image_item(PICTURE, ImagePolicy(size=56), 14)
    prompt = torch.tensor(
        [
            processor.generation_prompt(
                [{"from": "human", "value": "<image>\nDescribe."}], [("image", 16)]
            )
        ]
    )
    cached = model.generate(
        prompt, visual=picture, max_new_tokens=8, do_sample=False, use_cache=True
    )
    uncached = model.generate(
        prompt, visual=picture, max_new_tokens=8, do_sample=False, use_cache=False
    )
    assert cached.shape[1] == 8
    assert torch.equal(cached, uncached)


def test_save_load_round_trip_gives_identical_logits(model, processor, tmp_path):
    ids, _, picture = sample(processor)
    model.save_pretrained(tmp_path)
    loaded = OVMLLMForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded.llm) is type(model.llm)
    with torch.no_grad():
        assert torch.equal(model(ids, visual=picture).logits, loaded(ids, visual=picture).logits)
