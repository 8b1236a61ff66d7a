"""Evaluation: retrieval recall, zero-shot classification, nDCG, captioning metrics and reports.

:func:`evaluate_model` runs a model over a list of :class:`EvalSet` and returns MLflow-safe
metrics (``<eval set>.<metric>``), the metrics that could not run with their reason, and the
pictures and reports it wrote. Names are imported on first use, so importing
``rsvl.evaluate.retrieval`` (the training loop does) does not load matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CaptionScores": "captioning",
    "caption_metrics": "captioning",
    "generate_captions": "captioning",
    "EvalSet": "config",
    "load_eval_sets": "config",
    "NdcgResult": "ndcg",
    "ndcg_at_k": "ndcg",
    "evaluate_retrieval": "retrieval",
    "recall_curve": "retrieval",
    "recall_metrics": "retrieval",
    "retrieval_ranks": "retrieval",
    "EvalResult": "runner",
    "evaluate_model": "runner",
    "ZeroShotResult": "zero_shot",
    "class_vectors": "zero_shot",
    "classify": "zero_shot",
    "georsclip_templates": "zero_shot",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rsvl.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rsvl.evaluate.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
