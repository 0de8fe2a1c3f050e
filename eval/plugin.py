"""lmms-eval's entry point for the `ovmllm` model (`[project.entry-points."lmms_eval.models"]`).

lmms-eval imports this while it is still loading its own model registry, so it imports nothing
heavy: the model class is named by its path and loaded only when `--model ovmllm` asks for it.
"""

from __future__ import annotations


def manifests() -> list:
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id="ovmllm", chat_class_path="eval.lmms_model.OVMLLMEval")]
