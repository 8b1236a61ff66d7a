"""Corpus cases of broken text: captions, annotations (boxes, ids, places, times, answers), configuration.

See ``corpus_case.py`` for the contract.
"""

from __future__ import annotations

from pathlib import Path

from corpus_case import ERROR, Case, Expect

BASE_CONFIG = Path(__file__).resolve().parents[2] / "pipelines" / "sar_text" / "config.yaml"


def config_with(case: Path, text: str) -> Path:
    """Write a config overlay that extends the sar_text config with ``text``; return its path."""
    path = case / "config.yaml"
    path.write_text(f"paper: sar_text\nextends: {BASE_CONFIG.parent.parent / 'base.yaml'}\ndefaults:\n{text}")
    return path


CASES: list[Case] = [
    Case("config-unknown-key", "config", "a config key no schema has (`train.epoch` for `train.epochs`)",
         lambda case: [["rsvl", "config", "check", str(config_with(case, "  train:\n    epoch: 3\n"))]],
         Expect(ERROR, error=r"config\.yaml.*train\.epoch", dataset=None)),
]
