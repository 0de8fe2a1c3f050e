"""The hooks named by this folder's task YAMLs (`!function utils.NAME`); they live in
`eval/scoring.py`, so a task folder written by `eval/local_tasks.py` carries only this file."""

from eval.scoring import (  # noqa: F401
    chartqa_process_results,
    doc_to_text,
    doc_to_visual,
    mc_process_results,
    ocr_process_results,
)
