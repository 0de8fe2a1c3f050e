"""The ZeRO-3 wrapper: the tower runs once per patch size whatever a batch holds, and the dummy
calls change neither the loss nor any gradient."""

import pytest
import torch
from transformers import AutoTokenizer

from ovmllm.chat_processor import ChatProcessor
from ovmllm.model import OVMLLMConfig, OVMLLMForCausalLM
from tests.ovmllm.test_model import QWEN3, sample, tiny_llm
from train.uniform_calls import UniformTowerCalls


@pytest.fixture(scope="module")
def processor():
    if not QWEN3.is_dir():
        pytest.skip("../shared/real_data is absent")
    return ChatProcessor(AutoTokenizer.from_pretrained(QWEN3))


@pytest.fixture(scope="module")
def model(processor):
    torch.manual_seed(0)
    config = OVMLLMConfig(
        llm_config=tiny_llm("qwen3", len(processor.tokenizer)),
        vision_token_ids=processor.token_ids,
    )
    return OVMLLMForCausalLM(config).eval()


def test_wrapper_keeps_the_model_s_parameter_names(model):
    wrapped = UniformTowerCalls(model, [14, 16])
    assert list(wrapped.state_dict()) == list(model.state_dict())
    assert {n for n, _ in wrapped.named_children()} == {"tower", "connector", "llm"}


def test_text_only_batch_touches_the_tower_without_changing_the_loss(model, processor):
    encoded = processor.encode(
        [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hi there."}]
    )
    ids, labels = torch.tensor([encoded.input_ids]), torch.tensor([encoded.labels])
    media_ids, media_labels, picture = sample(processor)
    wrapped = UniformTowerCalls(model, [model.tower.spec.patch_size])
    model.train()
    try:
        model.zero_grad()
        model(media_ids, labels=media_labels, visual=picture).loss.backward()
        used = {n for n, p in model.tower.named_parameters() if p.grad is not None}
        plain = model(ids, labels=labels)
        model.zero_grad()
        with_dummy = wrapped(ids, labels=labels)
        with_dummy.loss.backward()
    finally:
        model.eval()
    torch.testing.assert_close(plain.loss, with_dummy.loss)
    grads = {n: p.grad for n, p in model.tower.named_parameters() if p.grad is not None}
    assert used and set(grads) == used  # the same tower parameters as a real media batch ...
    assert all(float(g.abs().max()) == 0.0 for g in grads.values())  # ... with zero gradients


def test_tower_runs_once_per_listed_patch_size_whatever_the_batch_holds(model, processor):
    """ZeRO-3 gathers parameters per tower call: every rank must call the tower equally often."""
    calls = []
    handle = model.tower.register_forward_hook(lambda m, i, o: calls.append(i[0].patch_size))
    media_ids, media_labels, picture = sample(processor)
    encoded = processor.encode([{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}])
    text_ids = torch.tensor([encoded.input_ids])
    wrapped = UniformTowerCalls(model, [14, 16])
    try:
        with torch.no_grad():
            plain = model(media_ids, labels=media_labels, visual=picture)
            padded = wrapped(media_ids, labels=media_labels, visual=picture)
            wrapped(text_ids)
    finally:
        handle.remove()
    assert calls == [14, 14, 16, 14, 16]
    torch.testing.assert_close(plain.loss, padded.loss)
    with pytest.raises(ValueError, match="tower runs at"):
        UniformTowerCalls(model, [16])(media_ids, visual=picture)
