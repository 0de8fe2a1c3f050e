"""Pixels to visual features: codec patch selection, packed visual tokens, towers."""
