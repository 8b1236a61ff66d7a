"""One KFP pipeline per paper, built from the shared components by :mod:`pipelines.dag`."""

from pathlib import Path

PIPELINES_DIR = Path(__file__).resolve().parent


class UnknownPaper(ValueError):
    """No pipeline of that name; the message lists the known papers."""


def known_papers() -> list[str]:
    """The papers with a pipeline: every ``pipelines/<paper>/`` with a ``config.yaml`` and a ``pipeline.py``."""
    return sorted(p.parent.name for p in PIPELINES_DIR.glob("*/config.yaml") if (p.parent / "pipeline.py").is_file())


def require_paper(paper: str) -> str:
    """Return ``paper`` if it has a pipeline.

    Raises:
        UnknownPaper: It has none; the message lists the known papers.
    """
    papers = known_papers()
    if paper not in papers:
        raise UnknownPaper(f"unknown paper {paper!r}; known papers: {', '.join(papers)} "
                           f"(each a folder pipelines/<paper>/ with config.yaml and pipeline.py)")
    return paper
