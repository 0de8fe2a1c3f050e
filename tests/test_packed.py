"""The packed visual-token contract."""

import pytest
import torch

from encoder.packed import PackedVisualTokens


def item(n: int, kind: str = "codec", grid=None, p: int = 16) -> PackedVisualTokens:
    return PackedVisualTokens(
        patches=torch.zeros(n, 3, p, p, dtype=torch.uint8),
        positions=torch.arange(n * 3, dtype=torch.int32).reshape(n, 3),
        cu_seqlens=torch.tensor([0, n], dtype=torch.int32),
        kinds=[kind],
        grids=[grid],
    )


def test_concat_and_item_round_trip():
    a, b, c = item(5), item(4, "frames", (1, 2, 2)), item(1, "image", (1, 1, 1))
    packed = PackedVisualTokens.concat([a, b, c])
    assert packed.cu_seqlens.tolist() == [0, 5, 9, 10] and packed.lengths == [5, 4, 1]
    assert len(packed) == 3 and packed.kinds == ["codec", "frames", "image"]
    again = packed.item(1)
    assert torch.equal(again.positions, b.positions) and again.grids == [(1, 2, 2)]


def test_inconsistent_inputs_are_rejected():
    with pytest.raises(ValueError, match="grid"):
        item(5, "frames", (1, 2, 2))
    with pytest.raises(ValueError, match="kind"):
        item(2, "audio")
    with pytest.raises(ValueError, match="patch sizes"):
        PackedVisualTokens.concat([item(2), item(2, p=14)])
    bad = item(3)
    with pytest.raises(ValueError, match="cu_seqlens"):
        PackedVisualTokens(bad.patches, bad.positions, torch.tensor([0, 2], dtype=torch.int32),
                           bad.kinds, bad.grids)  # fmt: skip
