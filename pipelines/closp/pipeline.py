"""CLOSP / GeoCLOSP (PAPERS.md §2): text-bridged SAR + multispectral retrieval.

The shared DAG (:mod:`pipelines.dag`) with this folder's ``config.yaml`` compiled in.
"""

from typing import Any, Callable, Sequence

from pipelines.dag import build_pipeline, paper_tracks

PAPER = "closp"


def pipeline(profile: str = "cluster", overrides: Sequence[str] = ()) -> Callable[..., Any]:
    """The ``closp`` KFP pipeline for ``profile`` (``local`` or ``cluster``), with config overrides applied."""
    return build_pipeline(paper_tracks(PAPER, profile, tuple(overrides)))
