"""SAR-TEXT (PAPERS.md §1): SAR-Narrator captions, SAR-RS-CLIP progressive transfer, SAR-RS-CoCa, SAR VQA.

The shared DAG (:mod:`pipelines.dag`) with this folder's ``config.yaml`` compiled in.
"""

from typing import Any, Callable, Sequence

from pipelines.dag import build_pipeline, paper_tracks

PAPER = "sar_text"


def pipeline(profile: str = "cluster", overrides: Sequence[str] = ()) -> Callable[..., Any]:
    """The ``sar_text`` KFP pipeline for ``profile`` (``local`` or ``cluster``), with config overrides applied."""
    return build_pipeline(paper_tracks(PAPER, profile, tuple(overrides)))
