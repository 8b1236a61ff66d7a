"""RS5M / GeoRSCLIP (PAPERS.md §3): data funnel, full and parameter-efficient fine-tuning.

The shared DAG (:mod:`pipelines.dag`) with this folder's ``config.yaml`` compiled in.
"""

from typing import Any, Callable, Sequence

from pipelines.dag import build_pipeline, paper_tracks

PAPER = "georsclip"


def pipeline(profile: str = "cluster", overrides: Sequence[str] = ()) -> Callable[..., Any]:
    """The ``georsclip`` KFP pipeline for ``profile`` (``local`` or ``cluster``), with config overrides applied."""
    return build_pipeline(paper_tracks(PAPER, profile, tuple(overrides)))
