"""The chat processor with the real Qwen3 tokenizer: masking, placeholders, rejections."""

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from connector import ConnectorConfig
from encoder.towers import TowerConfig, build_tower
from ovmllm.chat_processor import IGNORE_INDEX, ChatConfig, ChatProcessor, SampleRejected
from tests.conftest import REAL_DATA

QWEN3 = REAL_DATA / "tokenizers" / "qwen3"


@pytest.fixture(scope="module")
def qwen3(qwen3_tokenizer):
    return qwen3_tokenizer


def supervised_text(tokenizer, sample) -> str:
    return tokenizer.decode(
        [
            t
            for t, label in zip(sample.input_ids, sample.labels, strict=True)
            if label != IGNORE_INDEX
        ]
    )


def test_only_assistant_content_and_end_of_turn_are_supervised(qwen3):
    processor = ChatProcessor(qwen3)
    conversation = [
        {
            "from": "human",
            "value": "<image>\nWhat is this? Answer: a cat.",
        },  # the answer text appears in a user turn too
        {"from": "gpt", "value": "a cat."},
        {"from": "human", "value": "And the colour?"},
        {"from": "gpt", "value": "Grey, with <stripes>."},
        {"from": "human", "value": "Thanks."},
        {"from": "gpt", "value": "You are welcome."},
    ]
    sample = processor.encode(conversation, [("image", 9)])
    assert (
        supervised_text(qwen3, sample)
        == "a cat.<|im_end|>Grey, with <stripes>.<|im_end|>You are welcome.<|im_end|>"
    )
    full = qwen3.decode(sample.input_ids)
    assert full.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert "<think>\n\n</think>\n\nYou are welcome." in full  # the empty think block, unsupervised
    assert sample.input_ids.count(qwen3.convert_tokens_to_ids("<|image_pad|>")) == 9


def test_placeholder_counts_come_from_each_tower_and_connector(qwen3):
    processor = ChatProcessor(qwen3, ChatConfig(max_length=100_000))
    image_pad, video_pad = (
        qwen3.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")
    )
    cases = {
        "onevision": [
            ("image", (1, 36, 36), 1296),
            ("frames", (8, 36, 36), 10368),
            ("codec", None, 10368),
        ],
        "siglip2": [("image", (1, 32, 32), 1024), ("frames", (8, 32, 32), 8192)],
        "qwen3_vit": [("image", (1, 32, 32), 256), ("frames", (8, 32, 32), 1024)],
    }
    for name, items in cases.items():
        spec = build_tower(TowerConfig(name=name)).spec
        for kind, grid, tokens in items:
            length = tokens if grid is None else grid[0] * grid[1] * grid[2]
            count = ConnectorConfig().num_output_tokens(
                kind, spec.num_output_tokens(kind, length, grid), grid
            )
            placeholder = "<image>" if kind == "image" else "<video>"
            sample = processor.encode(
                [{"from": "human", "value": f"{placeholder} hi"}, {"from": "gpt", "value": "ok"}],
                [(kind, count)],
            )
            pad = image_pad if kind == "image" else video_pad
            assert sample.input_ids.count(pad) == count == tokens
    merged = ConnectorConfig(name="spatial_merge").num_output_tokens("image", 1296, (1, 36, 36))
    assert merged == 324


def test_rejections_have_reasons(qwen3):
    processor = ChatProcessor(qwen3, ChatConfig(max_length=64))
    with pytest.raises(SampleRejected) as err:
        processor.encode(
            [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}], [("image", 100)]
        )
    assert err.value.reason == "visual_tokens_truncated"
    with pytest.raises(SampleRejected) as err:
        processor.encode([{"from": "human", "value": "hello"}, {"from": "gpt", "value": "  "}])
    assert err.value.reason == "no_supervised_tokens"
    with pytest.raises(SampleRejected) as err:
        processor.encode(
            [{"from": "human", "value": "<image> <image>"}, {"from": "gpt", "value": "x"}],
            [("image", 2)],
        )
    assert err.value.reason == "placeholder_mismatch"
    with pytest.raises(SampleRejected) as err:
        processor.encode(
            [{"from": "human", "value": "<video>"}, {"from": "gpt", "value": "x"}], [("image", 2)]
        )
    assert err.value.reason == "placeholder_mismatch"
    long_text = " ".join(["word"] * 200)
    sample = processor.encode(
        [{"from": "human", "value": "hi"}, {"from": "gpt", "value": long_text}]
    )
    assert len(sample.input_ids) == 64 and sample.num_supervised > 0  # text may be truncated


def test_the_real_demo_video_qa_tokenises(qwen3, real_video_samples):
    processor = ChatProcessor(qwen3, ChatConfig(max_length=16384))
    video_pad = qwen3.convert_tokens_to_ids("<|video_pad|>")
    for row in real_video_samples:
        sample = processor.encode(row["conversations"], [("codec", 10368)])
        assert sample.input_ids.count(video_pad) == 10368
        answers = [t["value"].strip() for t in row["conversations"] if t["from"] == "gpt"]
        assert supervised_text(qwen3, sample) == "".join(a + "<|im_end|>" for a in answers)


def test_a_tokenizer_without_vision_tokens_gets_them_added():
    vocab = {
        w: i
        for i, w in enumerate(
            [
                "[UNK]",
                "<|im_start|>",
                "<|im_end|>",
                "user",
                "assistant",
                "system",
                "hi",
                "ok",
                "\n",
                "You",
                "are",
                "a",
                "helpful",
                ".",
            ]
        )
    }
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    processor = ChatProcessor(tokenizer)
    assert processor.added_tokens == 4 and len(tokenizer) == len(vocab) + 4
    sample = processor.encode(
        [{"from": "human", "value": "<image> hi"}, {"from": "gpt", "value": "ok"}], [("image", 3)]
    )
    assert sample.input_ids.count(tokenizer.convert_tokens_to_ids("<|image_pad|>")) == 3
    assert (
        tokenizer.decode(
            [t for t, label in zip(sample.input_ids, sample.labels, strict=True) if label != -100]
        ).replace(" ", "")
        == "ok<|im_end|>"
    )


SHORT_ANSWERS = ["a", "d", "t", "in", "is", "end", "yes", "no", "A", "B", "1", "0"]
# Llama-3's header layout (its fixed system text included), a template unlike Qwen3's
LLAMA3_TEMPLATE = (
    "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{% if m['role'] == 'system' %}Cutting Knowledge Date: December 2023\n"
    "Today Date: 26 Jul 2024\n\n{% endif %}{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@pytest.fixture(scope="module", params=["qwen3", "llama3"])
def templated(request, qwen3):
    """(processor, end-of-turn marker) for the Qwen3 tokenizer under its own template and under
    a Llama-3-style one (its header tokens added as special tokens, as Llama-3's tokenizer has)."""
    if request.param == "qwen3":
        return ChatProcessor(qwen3), "<|im_end|>"
    tokenizer = AutoTokenizer.from_pretrained(QWEN3)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]},
        replace_extra_special_tokens=False,
    )
    tokenizer.chat_template = LLAMA3_TEMPLATE
    return ChatProcessor(tokenizer), "<|eot_id|>"


def test_short_answers_are_supervised_exactly_in_every_turn(templated):
    processor, end = templated

    def supervised(*answers: str) -> str:
        turns = []
        for i, answer in enumerate(answers):
            question = "<image>\nWhat is it?" if i == 0 else "And the other one?"
            turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
        return supervised_text(processor.tokenizer, processor.encode(turns, [("image", 4)]))

    for answer in SHORT_ANSWERS:
        assert supervised(answer) == answer + end, answer
        assert supervised(answer, "Fine.") == answer + end + "Fine." + end, answer
        assert supervised("Fine.", answer) == "Fine." + end + answer + end, answer
