"""Which hidden state an encoder hands on: one rule for every tower and the encoder itself."""

from __future__ import annotations


def hidden_state_index(layer: int, num_layers: int) -> int:
    """The index of `layer` among the num_layers + 1 hidden states (the embeddings first, then
    one per block); negative values count from the end, so -1 is the last block's output."""
    num_states = num_layers + 1
    index = layer if layer >= 0 else num_states + layer
    if not 0 <= index < num_states:
        raise ValueError(f"layer={layer} is outside the {num_states} hidden states")
    return index
