"""Packed sequences attend only inside each sample under every supported attention kernel:
packed logits and loss equal those of the samples run one by one (tiny Qwen3 LLM, CPU)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen3Config

from ovmllm.build import LLMConfig, ModelConfig, build_llm
from ovmllm.chat_processor import IGNORE_INDEX
from ovmllm.config import ConfigError, load_config
from ovmllm.data.packing import collate
from ovmllm.model import OVMLLMConfig, OVMLLMForCausalLM

VOCAB = 97


def tiny_model(attn_implementation: str) -> OVMLLMForCausalLM:
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, head_dim=32,
                         num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1)  # fmt: skip
    llm = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)
    return OVMLLMForCausalLM(OVMLLMConfig(llm_config=llm.config), llm=llm).eval()


def samples(lengths: list[int]) -> list[tuple[list[int], list[int]]]:
    """Random ids; labels supervise the second half of each sample."""
    generator = torch.Generator().manual_seed(1)
    out = []
    for n in lengths:
        ids = torch.randint(0, VOCAB, (n,), generator=generator).tolist()
        out.append((ids, [IGNORE_INDEX] * (n // 2) + ids[n // 2 :]))
    return out


@pytest.mark.parametrize(
    "attn_implementation",
    # flex_attention compiles for ~30 s on CPU (forward only there; the GPU check trains it)
    ["eager", "sdpa", pytest.param("flex_attention", marks=pytest.mark.slow)],
)
@torch.no_grad()
def test_packed_logits_and_loss_equal_one_sample_at_a_time(attn_implementation):
    model = tiny_model(attn_implementation)
    parts = samples([7, 12, 5])
    # two packed sequences: [s0, s1] and [s2] (padded), as the collator builds them
    batch = collate([parts[:2], parts[2:]], pad_id=0)
    packed = model(**batch)
    alone = [model(torch.tensor([ids]), labels=torch.tensor([labels])) for ids, labels in parts]
    torch.testing.assert_close(packed.logits, torch.cat([out.logits for out in alone]))
    torch.testing.assert_close(packed.loss_sum, sum(out.loss_sum for out in alone))
    assert int(packed.num_tokens) == sum(int(out.num_tokens) for out in alone)


@torch.no_grad()
def test_supervised_logits_are_the_same_when_the_llm_keeps_only_shared_positions(monkeypatch):
    """transformers 5.17 (the GPU image's) takes no per-row `logits_to_keep`: the model asks for
    the union of kept positions and picks each row's own; the rows must be the same."""
    import ovmllm.model

    model = tiny_model("sdpa")
    batch = collate([samples([7, 12]), samples([5, 3, 8])], pad_id=0)
    per_row = model(**batch)
    monkeypatch.setattr(ovmllm.model, "LOGITS_KEEP_PER_ROW", False)
    shared = model(**batch)
    assert per_row.logits.shape[0] == int(per_row.num_tokens) == shared.logits.shape[0]
    torch.testing.assert_close(shared.logits, per_row.logits)
    torch.testing.assert_close(shared.loss_sum, per_row.loss_sum)


def test_attention_implementation_is_validated_and_saved(tmp_path):
    with pytest.raises(ConfigError, match=r"llm\.attn_implementation='flash_attention_9'"):
        load_config(
            ModelConfig, "configs/model/tiny.yaml", ["llm.attn_implementation=flash_attention_9"]
        )
    llm = build_llm(LLMConfig(attn_implementation="eager"), VOCAB)
    assert llm.config._attn_implementation == "eager"
    model = OVMLLMForCausalLM(OVMLLMConfig(llm_config=llm.config), llm=llm)
    assert model.config.llm_attn_implementation == "eager"  # recorded from the LLM given
    model.save_pretrained(tmp_path)
    loaded = OVMLLMForCausalLM.from_pretrained(tmp_path)
    assert loaded.llm.config._attn_implementation == "eager"


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_cached_generation_equals_uncached(attn_implementation):
    model = tiny_model(attn_implementation)
    prompt = torch.tensor([samples([9])[0][0]])
    cached = model.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=True)
    plain = model.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=False)
    assert cached.shape[1] == 6 and torch.equal(cached, plain)
