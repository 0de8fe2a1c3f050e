"""OneVision-Encoder on tiny random weights: packing, positions, the official call, weights."""

import math

import pytest
import torch
from transformers import AutoModel

from encoder import OneVisionEncoderConfig, OneVisionEncoderModel
from encoder.onevision.rope import VideoRotaryEmbedding, apply_rotary, rotate_half_interleaved
from train.modules import enable_activation_checkpointing

torch.manual_seed(0)


@pytest.fixture(scope="module")
def model() -> OneVisionEncoderModel:
    torch.manual_seed(0)
    return OneVisionEncoderModel(
        OneVisionEncoderConfig.from_size("tiny", num_hidden_layers=3)
    ).eval()


def random_item(n: int, p: int = 14, frames: int = 64, grid: int = 16):
    patches = torch.randn(n, 3, p, p)
    positions = torch.stack(
        [
            torch.randint(0, frames, (n,)),
            torch.randint(0, grid, (n,)),
            torch.randint(0, grid, (n,)),
        ],
        1,
    )
    return patches, positions


def cu(*lengths: int) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)


@torch.no_grad()
def test_packed_equals_each_item_alone(model):
    items = [random_item(n) for n in (37, 5, 64, 1)]
    patches = torch.cat([i[0] for i in items])
    positions = torch.cat([i[1] for i in items])
    packed = model.forward_packed(patches, positions, cu(37, 5, 64, 1), output_hidden_states=True)
    start = 0
    for k, (p, pos) in enumerate(items):
        alone = model.forward_packed(p, pos, cu(len(p)), output_hidden_states=True)
        end = start + len(p)
        torch.testing.assert_close(
            packed.last_hidden_state[start:end], alone.last_hidden_state, atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(
            packed.hidden_states[-2][start:end], alone.hidden_states[-2], atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(
            packed.pooler_output[k], alone.pooler_output[0], atol=1e-5, rtol=1e-5
        )
        start = end


@torch.no_grad()
def test_equal_length_batch_path_equals_the_per_item_path(model):
    p1, q1 = random_item(20)
    p2, q2 = random_item(20)
    both = model.forward_packed(torch.cat([p1, p2]), torch.cat([q1, q2]), cu(20, 20))
    first = model.forward_packed(p1, q1, cu(20))
    torch.testing.assert_close(
        both.last_hidden_state[:20], first.last_hidden_state, atol=1e-5, rtol=1e-5
    )


@torch.no_grad()
def test_permuting_tokens_with_their_positions_permutes_the_output(model):
    patches, positions = random_item(50)
    perm = torch.randperm(50)
    out = model.forward_packed(patches, positions, cu(50))
    shuffled = model.forward_packed(patches[perm], positions[perm], cu(50))
    torch.testing.assert_close(
        shuffled.last_hidden_state, out.last_hidden_state[perm], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(shuffled.pooler_output, out.pooler_output, atol=1e-5, rtol=1e-5)
    # ... and positions carry information: shuffling positions alone changes the features
    moved = model.forward_packed(patches, positions[perm], cu(50))
    assert (moved.last_hidden_state - out.last_hidden_state).abs().max() > 1e-3


def dense_patches(pixels: torch.Tensor, p: int) -> torch.Tensor:
    """[C, T, H, W] → [T * H/p * W/p, C, p, p], frame-major then row, column."""
    c, t, h, w = pixels.shape
    x = pixels.reshape(c, t, h // p, p, w // p, p).permute(1, 2, 4, 0, 3, 5)
    return x.reshape(-1, c, p, p)


@torch.no_grad()
def test_official_call_with_patch_positions_equals_the_packed_path(model):
    video = torch.randn(2, 3, 4, 28, 42)  # 4 frames of 2 x 3 patches
    visible = torch.stack([torch.randperm(24)[:10], torch.randperm(24)[:10]])
    positions = torch.stack(
        [torch.randint(0, 64, (2, 10)), torch.randint(0, 2, (2, 10)), torch.randint(0, 3, (2, 10))],
        -1,
    )
    official = model(
        video, visible_indices=visible, patch_positions=positions, output_hidden_states=True
    )
    for b in range(2):
        patches = dense_patches(video[b], 14)[visible[b]]
        packed = model.forward_packed(patches, positions[b], cu(10), output_hidden_states=True)
        torch.testing.assert_close(
            official.last_hidden_state[b], packed.last_hidden_state, atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(
            official.hidden_states[-2][b], packed.hidden_states[-2], atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(
            official.pooler_output[b], packed.pooler_output[0], atol=1e-5, rtol=1e-5
        )


@torch.no_grad()
def test_official_dense_call_uses_the_frame_index_as_t(model):
    video = torch.randn(1, 3, 3, 28, 28)
    official = model(video)
    t, rest = torch.arange(12).div(4, rounding_mode="floor"), torch.arange(12) % 4
    positions = torch.stack([t, rest // 2, rest % 2], 1)
    packed = model.forward_packed(dense_patches(video[0], 14), positions, cu(12))
    torch.testing.assert_close(
        official.last_hidden_state[0], packed.last_hidden_state, atol=1e-5, rtol=1e-5
    )
    image = model(video[:, :, 0])  # 4-D: an image, t = 0
    positions = torch.stack(
        [torch.zeros(4, dtype=torch.long), torch.arange(4) // 2, torch.arange(4) % 2], 1
    )
    packed = model.forward_packed(dense_patches(video[0, :, :1], 14), positions, cu(4))
    torch.testing.assert_close(
        image.last_hidden_state[0], packed.last_hidden_state, atol=1e-5, rtol=1e-5
    )


@torch.no_grad()
def test_features_is_hidden_state_minus_two_and_skips_the_last_block(model):
    patches, positions = random_item(30)
    full = model.forward_packed(patches, positions, cu(30), output_hidden_states=True)
    assert len(full.hidden_states) == model.config.num_hidden_layers + 1
    calls = []
    hook = model.encoder.layers[-1].register_forward_hook(lambda *a: calls.append(1))
    try:
        feats = model.features(patches, positions, cu(30), layer=-2)
    finally:
        hook.remove()
    assert calls == []
    torch.testing.assert_close(feats, full.hidden_states[-2])
    with pytest.raises(ValueError, match="layer"):
        model.features(patches, positions, cu(30), layer=-10)


PROJECTIONS = [f"self_attn.{p}_proj.{w}" for p in "qkv" for w in ("weight", "bias")]
BLOCK = [
    *PROJECTIONS,
    *(f"self_attn.out_proj.{w}" for w in ("weight", "bias")),
    *(f"layer_norm{i}.{w}" for i in (1, 2) for w in ("weight", "bias")),
    *(f"mlp.fc{i}.{w}" for i in (1, 2) for w in ("weight", "bias")),
]
HEAD = [
    "probe",
    "attention.in_proj_weight",
    "attention.in_proj_bias",
    "attention.out_proj.weight",
    "attention.out_proj.bias",
    "norm.weight",
    *(f"mlp.fc{i}.{w}" for i in (1, 2) for w in ("weight", "bias")),
]
OFFICIAL_LARGE_KEYS = [
    "embeddings.patch_embedding.weight",
    "layernorm_pre.weight",
    "layernorm_pre.bias",
    *(f"encoder.layers.{i}.{name}" for i in range(24) for name in BLOCK),
    "layernorm_post.weight",
    "layernorm_post.bias",
    *(f"head.{name}" for name in HEAD),
]


def test_large_state_dict_matches_the_official_names_and_shapes():
    with torch.device("meta"):
        large = OneVisionEncoderModel(OneVisionEncoderConfig.from_size("large"))
    state = large.state_dict()
    assert sorted(state) == sorted(OFFICIAL_LARGE_KEYS)
    assert state["embeddings.patch_embedding.weight"].shape == (1024, 3, 14, 14)
    assert state["encoder.layers.0.mlp.fc1.weight"].shape == (4096, 1024)
    assert state["head.probe"].shape == (1, 1, 1024)
    assert state["head.attention.in_proj_weight"].shape == (3072, 1024)


def test_save_load_round_trip_is_bit_exact(model, tmp_path):
    model.save_pretrained(tmp_path)
    config = (tmp_path / "config.json").read_text()
    assert '"model_type": "onevision_encoder"' in config and '"rope_theta"' in config
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, OneVisionEncoderModel)
    for (k1, v1), (k2, v2) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)
    assert not any("rope" in k or "freq" in k for k in model.state_dict())
    patches, positions = random_item(12)
    with torch.no_grad():
        a = model.forward_packed(patches, positions, cu(12)).last_hidden_state
        b = loaded.eval().forward_packed(patches, positions, cu(12)).last_hidden_state
    assert torch.equal(a, b)


def test_rope_matches_the_formula_by_hand():
    rope = VideoRotaryEmbedding(head_dim=64, theta=10000.0)
    positions = torch.tensor([[0, 0, 0], [3, 1, 2], [63, 35, 7]])
    cos, sin = rope(positions, torch.float64)
    for row, (t, h, w) in enumerate(positions.tolist()):
        f = [t * 10000 ** (-k / 8) for k in range(8)] + [h * 10000 ** (-k / 12) for k in range(12)]
        f += [w * 10000 ** (-k / 12) for k in range(12)]
        angles = torch.tensor(f + f, dtype=torch.float64)
        torch.testing.assert_close(cos[row], angles.cos(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sin[row], angles.sin(), atol=1e-5, rtol=1e-5)
    x = torch.arange(1.0, 5.0)
    assert rotate_half_interleaved(x).tolist() == [-2.0, 1.0, -4.0, 3.0]
    q = torch.randn(3, 1, 64, dtype=torch.float64)
    out = apply_rotary(q, cos, sin)
    # pair (0, 1) rotates by angle f[0] = t * 1, pair (32, 33) by f[32 % 32] ... as the formula says
    a = torch.tensor([3.0 * 1, 3.0 * 10000 ** (-1 / 8)], dtype=torch.float64)  # row 1, dims 0 and 1
    expect0 = q[1, 0, 0] * a[0].cos() - q[1, 0, 1] * a[0].sin()
    expect1 = q[1, 0, 1] * a[1].cos() + q[1, 0, 0] * a[1].sin()
    assert math.isclose(out[1, 0, 0].item(), expect0.item(), rel_tol=1e-6)
    assert math.isclose(out[1, 0, 1].item(), expect1.item(), rel_tol=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(1)
    config = OneVisionEncoderConfig.from_size("tiny", num_hidden_layers=2)
    model = OneVisionEncoderModel(config).train()
    patches, positions = random_item(16)

    def grads():
        model.zero_grad()
        model.forward_packed(patches, positions, cu(9, 7)).pooler_output.sum().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = grads()
    enable_activation_checkpointing(model)
    assert all(layer.gradient_checkpointing for layer in model.encoder.layers)
    checkpointed = grads()
    assert len(plain) == len(checkpointed)
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b)


@torch.no_grad()
def test_bf16_runs_close_to_fp32(model):
    patches, positions = random_item(40)
    ref = model.forward_packed(patches, positions, cu(25, 15)).last_hidden_state
    half = model.to(torch.bfloat16)
    try:
        out = half.forward_packed(patches.bfloat16(), positions, cu(25, 15)).last_hidden_state
    finally:
        model.to(torch.float32)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().mean() < 0.05


def test_the_block_compiles_without_graph_breaks(model):
    from encoder.attention import PackedSequences

    layer = model.encoder.layers[0]
    x = torch.randn(30, 128)
    cos, sin = model.video_rope(random_item(30)[1], x.dtype)
    for seqs in (
        PackedSequences.uniform(2, 15, x.device),
        PackedSequences.from_cu_seqlens(cu(20, 10)),
    ):
        explained = torch._dynamo.explain(layer)(x, cos, sin, seqs)
        assert explained.graph_break_count == 0
        assert explained.graph_count == 1


def test_packed_kernel_takes_torch_varlen_only_where_it_computes_the_same(monkeypatch):
    """GPU half precision with unequal items: torch's varlen kernel; one without a `scale`
    argument (an older torch) only at the default scale; equal items: one batched SDPA; CPU: per
    item. Only the tensors' device, dtype and shape are read, so stand-ins do on a CPU."""
    from types import SimpleNamespace

    import encoder.attention as attention

    gpu_half = SimpleNamespace(is_cuda=True, dtype=torch.bfloat16, shape=(10, 4, 64))
    unequal = attention.PackedSequences.from_cu_seqlens(torch.tensor([0, 3, 10]))
    equal = attention.PackedSequences.from_cu_seqlens(torch.tensor([0, 5, 10]))
    monkeypatch.setattr(attention, "flash_attn_varlen_func", None)
    monkeypatch.setattr(attention, "varlen_attn", lambda *a, **k: None)
    monkeypatch.setattr(attention, "VARLEN_TAKES_SCALE", True)
    assert attention.packed_kernel(gpu_half, unequal, 0.3) == "torch_varlen"
    assert attention.packed_kernel(gpu_half, equal, 0.3) == "batched_sdpa"
    monkeypatch.setattr(attention, "VARLEN_TAKES_SCALE", False)
    assert attention.packed_kernel(gpu_half, unequal, 64**-0.5) == "torch_varlen"
    assert attention.packed_kernel(gpu_half, unequal, 0.3) == "per_item_sdpa"
    cpu = torch.zeros(10, 4, 64, dtype=torch.bfloat16)
    assert attention.packed_kernel(cpu, unequal, 64**-0.5) == "per_item_sdpa"
