"""Projectors from the vision tower's width to the LLM's width, picked by name."""

from connector.projectors import (
    CONNECTORS,
    ConnectorConfig,
    Mlp2xGelu,
    Projector,
    SpatialMergeProjector,
    build_connector,
)

__all__ = [
    "CONNECTORS",
    "ConnectorConfig",
    "Mlp2xGelu",
    "Projector",
    "SpatialMergeProjector",
    "build_connector",
]
