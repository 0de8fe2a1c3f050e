"""Pixels to visual features: codec patch selection, packed visual tokens, vision towers.

Importing `encoder` registers OneVision-Encoder with transformers' Auto classes (the one
import-time side effect the design allows), so `AutoModel.from_pretrained(path)` loads an
official checkpoint folder.
"""

from transformers import AutoConfig, AutoModel

from encoder.onevision import OneVisionEncoderConfig, OneVisionEncoderModel

AutoConfig.register(OneVisionEncoderConfig.model_type, OneVisionEncoderConfig, exist_ok=True)
AutoModel.register(OneVisionEncoderConfig, OneVisionEncoderModel, exist_ok=True)

__all__ = ["OneVisionEncoderConfig", "OneVisionEncoderModel"]
