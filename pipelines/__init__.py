"""One KFP pipeline per paper: the shared DAG (:mod:`pipelines.dag`) with ``pipelines/<paper>/config.yaml`` compiled in."""

from pathlib import Path

PIPELINES_DIR = Path(__file__).resolve().parent


class UnknownPaper(ValueError):
    """No pipeline of that name; the message lists the known papers."""


def known_papers() -> list[str]:
    """The papers with a pipeline: every ``pipelines/<paper>/config.yaml`` (an overlay on ``pipelines/base.yaml``)."""
    return sorted(p.parent.name for p in PIPELINES_DIR.glob("*/config.yaml"))


def require_paper(paper: str) -> str:
    """Return ``paper`` if it has a pipeline.

    Raises:
        UnknownPaper: It has none; the message lists the known papers.
    """
    papers = known_papers()
    if paper not in papers:
        raise UnknownPaper(f"unknown paper {paper!r}; known papers: {', '.join(papers)} "
                           f"(each a folder pipelines/<paper>/ with a config.yaml)")
    return paper
