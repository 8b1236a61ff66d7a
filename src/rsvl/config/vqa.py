"""Settings of the pipeline's ``vqa`` step: which closed-set model answers, on which splits."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from rsvl.config.base import StrictModel


class VqaConfig(StrictModel):
    """The ``vqa`` step: questions from the run dataset's boxes and masks, answered on the trained CLIP.

    ``model`` is the closed-set answerer built on the run's CLIP (``linear_head``: a softmax head per
    question type on frozen image embeddings, fitted on ``train_split``; ``answer_ranker``: each
    candidate answer as a statement ranked by the CLIP, no fitting). Both are scored on
    ``test_split`` against the majority-answer and random baselines, accuracy per question type.
    The two splits must differ: a head scored on the rows it was fitted on would report memorisation.
    """

    model: Literal["linear_head", "answer_ranker"] = "linear_head"
    train_split: Literal["train", "val", "test"] = "train"
    test_split: Literal["train", "val", "test"] = "test"

    @model_validator(mode="after")
    def _held_out(self) -> "VqaConfig":
        if self.train_split == self.test_split:
            raise ValueError(f"vqa.train_split and vqa.test_split are both {self.test_split!r}; "
                             "score on a split the answerer was not fitted on")
        return self
