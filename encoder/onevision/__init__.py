"""OneVision-Encoder (the official architecture and parameter names) over packed items."""

from encoder.onevision.configuration import SIZES, OneVisionEncoderConfig
from encoder.onevision.modeling import OneVisionEncoderModel, OneVisionEncoderPreTrainedModel

__all__ = [
    "SIZES",
    "OneVisionEncoderConfig",
    "OneVisionEncoderModel",
    "OneVisionEncoderPreTrainedModel",
]
