"""OneVision-Encoder: a ViT with 3D RoPE over packed, irregular patches (PAPER.md section 3).

Parameter names, config fields and outputs follow the official Hugging Face model, so official
checkpoints load with `from_pretrained(path)` unchanged and the official call gives the same
results. Unlike the official model, every forward runs on packed items: any number of items
of any length in one batch, positions carried explicitly, attention kept inside each item.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling

from encoder.attention import PackedSequences, packed_attention
from encoder.hidden_states import hidden_state_index
from encoder.onevision.configuration import OneVisionEncoderConfig
from encoder.onevision.rope import VideoRotaryEmbedding, apply_rotary


def norm_layer(config: OneVisionEncoderConfig) -> nn.Module:
    if config.layer_norm_type == "rms_norm":
        return nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class OneVisionEncoderMLP(nn.Module):
    def __init__(self, config: OneVisionEncoderConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]  # "gelu" is the exact (erf) GELU
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class OneVisionEncoderAttention(nn.Module):
    def __init__(self, config: OneVisionEncoderConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.heads
        self.scale = self.head_dim**-0.5
        d = config.hidden_size
        self.k_proj, self.v_proj, self.q_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, seqs: PackedSequences
    ) -> torch.Tensor:
        shape = (x.shape[0], self.heads, self.head_dim)
        q = apply_rotary(self.q_proj(x).view(shape), cos, sin)
        k = apply_rotary(self.k_proj(x).view(shape), cos, sin)
        v = self.v_proj(x).view(shape)
        out = packed_attention(q, k, v, seqs, self.scale)
        return self.out_proj(out.reshape(x.shape))


class OneVisionEncoderEncoderLayer(GradientCheckpointingLayer):
    """Pre-norm block: x + attn(LN1 x), then x + MLP(LN2 x)."""

    def __init__(self, config: OneVisionEncoderConfig) -> None:
        super().__init__()
        self.self_attn = OneVisionEncoderAttention(config)
        self.layer_norm1 = norm_layer(config)
        self.mlp = OneVisionEncoderMLP(config)
        self.layer_norm2 = norm_layer(config)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, seqs: PackedSequences
    ) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), cos, sin, seqs)
        return x + self.mlp(self.layer_norm2(x))


class OneVisionEncoderEncoder(nn.Module):
    def __init__(self, config: OneVisionEncoderConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            OneVisionEncoderEncoderLayer(config) for _ in range(config.num_hidden_layers)
        )


class OneVisionEncoderEmbeddings(nn.Module):
    def __init__(self, config: OneVisionEncoderConfig) -> None:
        super().__init__()
        p = config.patch_size
        self.patch_embedding = nn.Conv2d(config.num_channels, config.hidden_size, p, p, bias=False)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """[N, C, p, p] pixels → [N, D]; a conv with kernel = stride = p is one linear map."""
        weight = self.patch_embedding.weight
        return F.linear(patches.flatten(1).to(weight.dtype), weight.flatten(1))


class OneVisionEncoderPoolingHead(nn.Module):
    """Attention pooling: a learned probe attends over an item's tokens, then a + MLP(RMSNorm a)."""

    def __init__(self, config: OneVisionEncoderConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.probe = nn.Parameter(torch.randn(1, 1, d))
        self.attention = nn.MultiheadAttention(d, config.num_attention_heads, batch_first=True)
        self.norm = nn.RMSNorm(d, eps=config.layer_norm_eps)
        self.mlp = OneVisionEncoderMLP(config)

    def forward(self, x: torch.Tensor, seqs: PackedSequences) -> torch.Tensor:
        """Packed [N, D] → pooled [B, D]."""
        if seqs.equal_lengths:
            items = x.view(len(seqs.lengths), -1, x.shape[-1])
            pooled = self.attention(self.probe.expand(items.shape[0], -1, -1), items, items)[0]
        else:
            pooled = torch.cat(
                [
                    self.attention(self.probe, x[None, a:b], x[None, a:b])[0]
                    for a, b in zip(seqs.bounds[:-1], seqs.bounds[1:], strict=True)
                ]
            )
        pooled = pooled + self.mlp(self.norm(pooled))
        return pooled[:, 0]


class OneVisionEncoderPreTrainedModel(PreTrainedModel):
    config_class = OneVisionEncoderConfig
    base_model_prefix = "onevision_encoder"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["OneVisionEncoderEncoderLayer"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """As the official model: normal(0, initializer_range) for linear and conv weights, zero
        biases, unit norms; the probe keeps its N(0, 1) draw, the pooling attention's packed
        in-projection PyTorch's own init."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear | nn.Conv2d):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.LayerNorm | nn.RMSNorm):
            module.weight.fill_(1.0)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()


class OneVisionEncoderModel(OneVisionEncoderPreTrainedModel):
    def __init__(self, config: OneVisionEncoderConfig) -> None:
        super().__init__(config)
        self.embeddings = OneVisionEncoderEmbeddings(config)
        self.layernorm_pre = norm_layer(config)
        self.encoder = OneVisionEncoderEncoder(config)
        self.video_rope = VideoRotaryEmbedding(
            config.hidden_size // config.num_attention_heads, config.rope_theta
        )
        self.layernorm_post = norm_layer(config) if config.use_head else None
        self.head = OneVisionEncoderPoolingHead(config) if config.use_head else None
        self.gradient_checkpointing = False
        self.post_init()

    # -- the packed path: what every forward runs -------------------------------------------

    def _run(
        self,
        hidden: torch.Tensor,
        positions: torch.Tensor,
        seqs: PackedSequences,
        num_layers: int,
        output_hidden_states: bool,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """`hidden` (after layernorm_pre) through the first `num_layers` blocks."""
        cos, sin = self.video_rope(positions, hidden.dtype)
        states = [hidden] if output_hidden_states else []
        for layer in self.encoder.layers[:num_layers]:
            hidden = layer(hidden, cos, sin, seqs)
            if output_hidden_states:
                states.append(hidden)
        return hidden, tuple(states)

    def forward_packed(
        self,
        patches: torch.Tensor,
        positions: torch.Tensor,
        cu_seqlens: torch.Tensor,
        output_hidden_states: bool = False,
    ) -> BaseModelOutputWithPooling:
        """Packed items: patches [N, C, p, p] (normalised pixels), positions [N, 3] (t, h, w),
        cu_seqlens [B + 1]. Returns last_hidden_state [N, D] (post-norm when the model has a
        head), hidden_states (each [N, D], the first being the encoder input) and
        pooler_output [B, D]."""
        seqs = PackedSequences.from_cu_seqlens(cu_seqlens)
        hidden = self.layernorm_pre(self.embeddings(patches))
        return self._finish(hidden, positions, seqs, output_hidden_states)

    def _finish(
        self,
        hidden: torch.Tensor,
        positions: torch.Tensor,
        seqs: PackedSequences,
        output_hidden_states: bool,
    ) -> BaseModelOutputWithPooling:
        n_layers = self.config.num_hidden_layers
        hidden, states = self._run(hidden, positions, seqs, n_layers, output_hidden_states)
        pooled = None
        if self.head is not None:
            hidden = self.layernorm_post(hidden)
            pooled = self.head(hidden, seqs)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden,
            pooler_output=pooled,
            hidden_states=states if output_hidden_states else None,
        )

    def features(
        self,
        patches: torch.Tensor,
        positions: torch.Tensor,
        cu_seqlens: torch.Tensor,
        layer: int = -2,
    ) -> torch.Tensor:
        """hidden_states[layer] of the packed items ([N, D], no post-norm), running only the
        blocks it needs: the LLM's features are layer -2, so the last block is skipped."""
        index = hidden_state_index(layer, self.config.num_hidden_layers)
        seqs = PackedSequences.from_cu_seqlens(cu_seqlens)
        hidden = self.layernorm_pre(self.embeddings(patches))
        return self._run(hidden, positions, seqs, index, output_hidden_states=False)[0]

    # -- the official call ------------------------------------------------------------------

    def forward(
        self,
        pixel_values: torch.Tensor,
        visible_indices: torch.Tensor | None = None,
        patch_positions: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPooling | tuple:
        """The official interface: pixel_values [B, C, H, W] (images, t = 0) or
        [B, C, T, H, W] (frames; tokens frame-major, then row, column).

        Positions: `patch_positions` [B, L, 3] when given; else the dense (t, h, w) grid over
        `rope_temporal_size` frames (1 for images) indexed by `visible_indices` [B, L]
        (default: every token in order, so t is the frame index). As in the official model,
        tokens are gathered by `visible_indices` (after layernorm_pre) only when L is smaller
        than the number of input tokens.
        """
        if output_attentions:
            raise ValueError("output_attentions is not supported (fused attention kernels)")
        output_hidden_states = bool(
            output_hidden_states
            if output_hidden_states is not None
            else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if pixel_values.dim() == 4:
            pixel_values = pixel_values.unsqueeze(2)
        if pixel_values.dim() != 5:
            raise ValueError(
                "pixel_values must be [B, C, H, W] or [B, C, T, H, W], "
                f"got {tuple(pixel_values.shape)}"
            )
        b, c, t, h, w = pixel_values.shape
        p = self.config.patch_size
        hp, wp = h // p, w // p
        patches = (
            pixel_values[..., : hp * p, : wp * p]
            .reshape(b, c, t, hp, p, wp, p)
            .permute(0, 2, 3, 5, 1, 4, 6)
            .reshape(b * t * hp * wp, c, p, p)
        )
        total = t * hp * wp
        hidden = self.layernorm_pre(self.embeddings(patches)).view(b, total, -1)
        if patch_positions is not None:
            positions = patch_positions.reshape(b, -1, 3)
            length = positions.shape[1]
        else:
            if visible_indices is None:
                visible_indices = torch.arange(total, device=hidden.device).expand(b, total)
            idx = visible_indices.long()
            positions = torch.stack([idx // (hp * wp), idx // wp % hp, idx % wp], dim=-1)
            length = idx.shape[1]
        if length < total:
            if visible_indices is None:
                raise ValueError("patch_positions has fewer rows than tokens: pass visible_indices")
            gather = visible_indices.long()[..., None].expand(-1, -1, hidden.shape[-1])
            hidden = hidden.gather(1, gather)
        elif length > total:
            raise ValueError(f"{length} positions for {total} tokens")
        seqs = PackedSequences.uniform(b, length, hidden.device)
        out = self._finish(
            hidden.reshape(b * length, -1), positions.reshape(-1, 3), seqs, output_hidden_states
        )
        states = out.hidden_states
        result = BaseModelOutputWithPooling(
            last_hidden_state=out.last_hidden_state.view(b, length, -1),
            pooler_output=out.pooler_output,
            hidden_states=tuple(s.view(b, length, -1) for s in states) if states else None,
        )
        return result if return_dict else result.to_tuple()
