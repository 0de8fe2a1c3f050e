"""The attentive probe's classifier: a learned query attends over a clip's patch features
(multi-head attention pooling), then LayerNorm and a Linear layer with a small initialisation,
so the untrained head starts near uniform predictions.

Pooling has no positions of its own and is permutation invariant: whatever the features know
about where and when a patch was comes from the frozen encoder.
"""

from __future__ import annotations

import torch
from torch import nn

HEAD_DIM = 64  # channels per attention head when the config leaves the count to the width
QUERY_STD = 0.02
CLASSIFIER_STD = 0.01  # small: logits start near zero


def default_heads(width: int) -> int:
    """One head per 64 channels (at least one) when the width allows it, else one head."""
    heads = max(1, width // HEAD_DIM)
    return heads if width % heads == 0 else 1


class AttentiveProbe(nn.Module):
    def __init__(self, width: int, num_classes: int, heads: int = 0) -> None:
        super().__init__()
        heads = heads or default_heads(width)
        if width % heads:
            raise ValueError(f"probe heads={heads} do not divide the feature width {width}")
        self.query = nn.Parameter(torch.empty(1, 1, width))
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, num_classes)
        nn.init.trunc_normal_(self.query, std=QUERY_STD)
        nn.init.trunc_normal_(self.classifier.weight, std=CLASSIFIER_STD)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, L, width] patch features of B clips (equal L within a cell) → [B, classes]."""
        query = self.query.expand(features.shape[0], -1, -1)
        pooled = self.attention(query, features, features, need_weights=False)[0][:, 0]
        return self.classifier(self.norm(pooled))
