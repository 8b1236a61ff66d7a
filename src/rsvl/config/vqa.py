"""Settings of the pipeline's ``vqa`` step: which closed-set model answers, on which splits."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, model_validator

from rsvl.config.base import StrictModel
from rsvl.config.evaluate import NAME_PATTERN

RUN_SET: Final[str] = "run"
"""The VQA set name of the run dataset (the ``vqa`` step's input), in metric keys ``vqa.run.<model>.<type>``."""
CANDIDATE: Final[str] = "candidate"
"""The VQA model name of the run's trained CLIP, in metric keys ``vqa.<set>.candidate.<type>``."""
BASELINES: Final[tuple[str, ...]] = ("majority", "random")


class VqaConfig(StrictModel):
    """The ``vqa`` step: questions from boxes and masks, answered on the trained CLIP and its comparisons.

    ``model`` is the closed-set answerer built on each CLIP (``linear_head``: one softmax head per
    question string on the frozen global image embedding; ``spatial_head``: the same on the
    embedding plus the image tower's feature grid before pooling, see :mod:`rsvl.vqa.spatial`;
    ``answer_ranker``: each candidate answer as a statement ranked by the CLIP, no fitting),
    fitted on ``train_split`` and scored on ``test_split`` of the run dataset against the
    majority-answer and random baselines, accuracy per question type. The two splits must
    differ: a head scored on the rows it was fitted on would report memorisation.

    ``sets`` names ``evaluate.sets`` entries whose datasets are asked too (resolved as the
    evaluate step resolves them: a ``source`` ingested into the evaluation cache, an ``optional``
    set skipped with its reason when the source is absent): fitted on their ``train_split``,
    scored on the eval set's ``split``. The models are the run's CLIP and the comparisons the
    evaluate step scores (``train.ablations``, and ``base`` with ``evaluate.compare_base``).
    """

    model: Literal["linear_head", "spatial_head", "answer_ranker"] = "linear_head"
    train_split: Literal["train", "val", "test"] = "train"
    test_split: Literal["train", "val", "test"] = "test"
    sets: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _named_sets(self) -> "VqaConfig":
        import re

        for name in self.sets:
            if not re.fullmatch(NAME_PATTERN, name) or name == RUN_SET:
                raise ValueError(f"vqa.sets entry {name!r}: name an evaluate.sets entry (not {RUN_SET!r}, "
                                 "the run dataset's own name)")
        if len(set(self.sets)) != len(self.sets):
            raise ValueError(f"vqa.sets repeats a name: {self.sets}")
        return self

    @model_validator(mode="after")
    def _held_out(self) -> "VqaConfig":
        if self.train_split == self.test_split:
            raise ValueError(f"vqa.train_split and vqa.test_split are both {self.test_split!r}; "
                             "score on a split the answerer was not fitted on")
        return self
