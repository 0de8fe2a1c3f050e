"""A small real tokenizer the project trains itself, so the quickstart runs on a fresh machine.

Tests use the real Qwen3 tokenizer from `../shared`; a user's machine has no such folder and no
hub access is assumed. This is a byte-level BPE (every string encodes) trained on the texts it is
given, with ChatML turns (`<|im_start|>role ... <|im_end|>`) as its chat template; the processor
adds the vision tokens it lacks, as it does for any tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from encoder.files import atomic_dir

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_toy_tokenizer(out: str | Path, texts: Iterable[str], vocab_size: int = 1024) -> Path:
    """Train on `texts` and save a `from_pretrained` folder at `out` (whole or not at all)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML_TEMPLATE
    with atomic_dir(out) as tmp:
        fast.save_pretrained(tmp)
    return Path(out)
