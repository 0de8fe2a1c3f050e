"""Prompts and scores of the local lmms-eval tasks (`eval/tasks/`), one function per YAML hook.

Docs are written by `eval/local_tasks.py` with absolute media paths and a ready `prompt`, so one
`doc_to_text` serves every task and training rows can be rendered with the same text.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

LETTER = re.compile(r"^\W*\(?([A-Z])(?:[\).:,\s]|$)")


def doc_to_visual(doc: dict) -> list[Image.Image | str]:
    """Images opened here (lmms-eval would take a `.tif` path for a video), videos as paths."""
    if doc.get("image"):
        with Image.open(doc["image"]) as image:
            return [image.convert("RGB")]
    return [doc["video"]] if doc.get("video") else []


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    return doc["prompt"]


def chosen_letter(response: str, options: list[str]) -> str | None:
    """The option a free-text answer picks: a leading letter ("B", "(B)", "B. red"), else the
    option whose text the answer is (ignoring case and a final full stop), else the one option
    whose text the answer contains; None when it picks none or several."""
    letters = [chr(ord("A") + i) for i in range(len(options))]
    match = LETTER.match(response.strip())
    if match and match.group(1) in letters:
        return match.group(1)
    text = response.strip().lower().rstrip(".")
    exact = [letter for letter, option in zip(letters, options, strict=True)
             if option.lower().rstrip(".") == text]  # fmt: skip
    if exact:
        return exact[0]
    named = [
        letter for letter, option in zip(letters, options, strict=True) if option.lower() in text
    ]
    return named[0] if len(named) == 1 else None


def mc_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return {"accuracy": float(chosen_letter(results[0], doc["options"]) == doc["answer"])}


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, one numpy row per character of `a`: the insertion pass is a running
    minimum of (candidate - j) + j, so each row is vectorised."""
    if not a or not b:
        return max(len(a), len(b))
    codes_b = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    columns = np.arange(len(b) + 1)
    previous = columns.copy()
    for i, char in enumerate(a, start=1):
        substitute = previous[:-1] + (codes_b != ord(char))
        candidate = np.concatenate(([i], np.minimum(substitute, previous[1:] + 1)))
        previous = np.minimum.accumulate(candidate - columns) + columns
    return int(previous[-1])


def char_accuracy(prediction: str, truth: str) -> float:
    """1 - character error rate over whitespace-normalised text, floored at 0."""
    prediction, truth = " ".join(prediction.split()), " ".join(truth.split())
    if not truth:
        return float(not prediction)
    return max(0.0, 1.0 - edit_distance(prediction, truth) / len(truth))


def ocr_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return {"char_accuracy": char_accuracy(results[0], doc["answer"])}


def _number(text: str) -> float | None:
    try:
        return float(text.strip().rstrip("%").replace(",", ""))
    except ValueError:
        return None


def relaxed_correct(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    """ChartQA's relaxed accuracy: numbers within 5% of the target, other answers equal ignoring
    case and a trailing full stop."""
    prediction = prediction.strip().rstrip(".")
    wanted, given = _number(target), _number(prediction)
    if wanted is not None and given is not None:
        if wanted == 0:
            return given == 0
        return abs(given - wanted) / abs(wanted) <= tolerance
    return prediction.lower() == target.strip().lower()


def chartqa_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return {"relaxed_accuracy": float(relaxed_correct(results[0], doc["answer"]))}
