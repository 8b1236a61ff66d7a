"""LRSCLIP (PAPERS.md §5): positional-embedding stretching to 248 tokens, dual long/short text loss.

The shared DAG (:mod:`pipelines.dag`) with this folder's ``config.yaml`` compiled in.
"""

from typing import Any, Callable, Sequence

from pipelines.dag import build_pipeline, paper_tracks

PAPER = "lrsclip"


def pipeline(profile: str = "cluster", overrides: Sequence[str] = ()) -> Callable[..., Any]:
    """The ``lrsclip`` KFP pipeline for ``profile`` (``local`` or ``cluster``), with config overrides applied."""
    return build_pipeline(paper_tracks(PAPER, profile, tuple(overrides)))
