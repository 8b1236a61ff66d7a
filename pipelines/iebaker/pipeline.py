"""iEBAKER (PAPERS.md §4): Eliminate-Before-Align, SAR-R retrieval, Keyword Explicit Reasoning.

The shared DAG (:mod:`pipelines.dag`) with this folder's ``config.yaml`` compiled in.
"""

from typing import Any, Callable, Sequence

from pipelines.dag import build_pipeline, paper_tracks

PAPER = "iebaker"


def pipeline(profile: str = "cluster", overrides: Sequence[str] = ()) -> Callable[..., Any]:
    """The ``iebaker`` KFP pipeline for ``profile`` (``local`` or ``cluster``), with config overrides applied."""
    return build_pipeline(paper_tracks(PAPER, profile, tuple(overrides)))
