"""Projectors: shapes, token counts, what the 2x2 merge concatenates, and the codec error."""

import pytest
import torch

from connector import ConnectorConfig, build_connector


def test_mlp2x_gelu_maps_each_token():
    proj = build_connector(ConnectorConfig(), 8, 12)
    x = torch.randn(5, 8)
    out = proj(x)
    assert out.shape == (5, 12)
    torch.testing.assert_close(proj(x[2:3]), out[2:3])
    assert [type(m).__name__ for m in proj.children()] == ["Linear", "GELU", "Linear"]
    assert ConnectorConfig().num_output_tokens("codec", 10368, None) == 10368


def test_spatial_merge_concatenates_each_2x2_neighbourhood():
    cfg = ConnectorConfig(name="spatial_merge")
    proj = build_connector(cfg, 2, 3)
    with torch.no_grad():
        proj.norm.weight.fill_(1.0)
        proj.norm.bias.zero_()
    grid = (2, 2, 4)  # 2 frames of 2 x 4 patches → 2 x 1 x 2 merged tokens
    x = torch.randn(16, 2)
    captured = {}
    proj.fc1.register_forward_hook(lambda m, inp, out: captured.update(inp=inp[0]))
    out = proj(x, [grid], [16])
    assert out.shape == (4, 3) and cfg.num_output_tokens("frames", 16, grid) == 4
    normed = proj.norm(x).view(2, 2, 4, 2)
    first = torch.cat([normed[0, 0, 0], normed[0, 0, 1], normed[0, 1, 0], normed[0, 1, 1]])
    torch.testing.assert_close(captured["inp"][0], first)


def test_spatial_merge_for_codec_is_a_config_error():
    cfg = ConnectorConfig(name="spatial_merge")
    with pytest.raises(ValueError, match="codec patches have none"):
        cfg.check_items({"codec", "image"})
    with pytest.raises(ValueError, match="codec patches have none"):
        cfg.num_output_tokens("codec", 100, None)
    with pytest.raises(ValueError, match="not divisible"):
        cfg.num_output_tokens("image", 15, (1, 3, 5))
    with pytest.raises(ValueError, match="not one of"):
        build_connector(ConnectorConfig(name="resampler"), 4, 4)
