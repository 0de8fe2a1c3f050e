"""Config of OneVision-Encoder with the official field names (PAPER.md section 3), so an
official `config.json` loads unchanged."""

from __future__ import annotations

from transformers import PretrainedConfig

# name -> (hidden, layers, heads, MLP). "tiny" is for tests: head_dim stays 64, the smallest
# size the 4:6:6 RoPE split supports exactly as the official sizes do.
SIZES = {
    "tiny": (128, 2, 2, 256),
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
    "huge": (1280, 32, 20, 5120),
}


class OneVisionEncoderConfig(PretrainedConfig):
    model_type = "onevision_encoder"

    def __init__(
        self,
        hidden_size: int = 1024,
        intermediate_size: int = 4096,
        num_hidden_layers: int = 24,
        num_attention_heads: int = 16,
        num_channels: int = 3,
        image_size: int = 448,
        patch_size: int = 14,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-6,
        layer_norm_type: str = "layer_norm",
        attention_dropout: float = 0.0,
        initializer_range: float = 0.02,
        rope_theta: float = 10000.0,
        rope_temporal_size: int | None = 64,
        use_head: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size={hidden_size} is not divisible by heads={num_attention_heads}"
            )
        head_dim = hidden_size // num_attention_heads
        if head_dim % 32:
            raise ValueError(
                f"head_dim={head_dim} must be a multiple of 32 for the 4:6:6 3D RoPE split"
            )
        if layer_norm_type not in ("layer_norm", "rms_norm"):
            raise ValueError(f"layer_norm_type={layer_norm_type!r} is not layer_norm or rms_norm")
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_channels = num_channels
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.layer_norm_type = layer_norm_type
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        self.rope_theta = rope_theta
        self.rope_temporal_size = rope_temporal_size
        self.use_head = use_head

    @classmethod
    def from_size(cls, size: str, **kwargs) -> OneVisionEncoderConfig:
        if size not in SIZES:
            raise ValueError(f"encoder size {size!r} is not one of {', '.join(SIZES)}")
        hidden, layers, heads, mlp = SIZES[size]
        sized = dict(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=mlp,
        )
        return cls(**{**sized, **kwargs})
