"""Where a registered model came from, stored as tags on its model version.

Every field is one tag of the same name, so the gate, the UI and ``mlflow`` searches read the
lineage without this package: ``tags.git_commit``, ``tags.train_data_md5``, ...
"""

from __future__ import annotations

from typing import Annotated, Mapping

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator

from rsvl.config import PAPERS

TagValue = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^\S+$")]


class Lineage(BaseModel):
    """Provenance of one model: code, data, run and config.

    Attributes:
        git_commit: Commit of the code that trained it.
        train_data_md5: DVC md5 (or data version tag ``md5:path``) of the training data.
        eval_data_md5: DVC md5 (or data version tag) of the evaluation data.
        pipeline_run_id: Id of the pipeline (or MLflow) run that produced it.
        config_hash: Digest of the resolved run config.
        paper: The paper it implements, one of :data:`rsvl.config.PAPERS`.
    """

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    git_commit: TagValue
    train_data_md5: TagValue
    eval_data_md5: TagValue
    pipeline_run_id: TagValue
    config_hash: TagValue
    paper: TagValue

    @field_validator("paper")
    @classmethod
    def _known_paper(cls, paper: str) -> str:
        if paper not in PAPERS:
            raise ValueError(f"unknown paper {paper!r}; expected one of {PAPERS}")
        return paper

    def tags(self) -> dict[str, str]:
        """The model version tags, one per field."""
        return self.model_dump()

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> "Lineage":
        """Read the lineage back from a model version's tags (other tags are ignored).

        Raises:
            pydantic.ValidationError: A lineage tag is missing or breaks its rule.
        """
        return cls(**{name: tags[name] for name in cls.model_fields if name in tags})
