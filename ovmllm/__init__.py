"""ovmllm: multimodal LLMs on a codec-aligned sparse video encoder (OneVision-Encoder)."""

__version__ = "0.1.0"
