"""The fact that matters of a finished pipeline step, for its console line.

``ingest``/``caption``/``filter``: rows kept and quarantined (rows of the output dataset's
``manifest.parquet`` and ``quarantine.parquet``), for ``caption`` also the captions each narrator
route wrote (``caption_provenance.parquet``); ``train``: the final loss; ``vqa`` and
``evaluate``: the headline metric beside its comparisons; ``register``: the version and its
aliases; ``gate``: the decision; ``promote``: the champion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from pipelines.console import StepResult
from pipelines.summary import VQA_HEADLINE, comparisons, headline_metrics
from rsvl.config import RunConfig
from rsvl.data.store import MANIFEST_FILE, QUARANTINE_FILE
from rsvl.gate import ALREADY_CHAMPION

DATASET_OUTPUTS = {"ingest": "dataset", "caption": "captioned", "filter": "filtered"}
REASONS_SHOWN = 110
"""Characters of the gate's reasons on its step line (the summary shows them all)."""


def _path(artifact: Any) -> Path:
    return Path(getattr(artifact, "path", None) or artifact.uri)


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows if path.is_file() else 0


def dataset_rows(folder: str | Path) -> tuple[int, int]:
    """Rows kept (``manifest.parquet``) and quarantined (``quarantine.parquet``) of a dataset folder."""
    folder = Path(folder)
    return _rows(folder / MANIFEST_FILE), _rows(folder / QUARANTINE_FILE)


def caption_routes(folder: str | Path) -> dict[str, int]:
    """Captions the caption step wrote per narrator route (``a2c``, ``sa2c``, ``optical``), in route order."""
    import pyarrow.parquet as pq

    from rsvl.caption import PROVENANCE_FILE, ROUTES

    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return {}
    routes = pq.read_table(path, columns=["route"]).column("route").to_pylist()
    return {route: routes.count(route) for route in ROUTES if route in routes}


def artifact_metrics(artifact: Any) -> dict[str, float]:
    """A metrics artifact's values: its metadata, else the JSON file the components also write."""
    values = {k: v for k, v in (getattr(artifact, "metadata", None) or {}).items() if isinstance(v, (int, float))}
    if values:
        return values
    path = _path(artifact)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _value(metric: str, values: Mapping[str, float]) -> str:
    beside = comparisons(values, [metric])
    others = ", ".join(f"{name} {found[metric]:.3g}" for name, found in beside.items())
    return f"{metric} {values[metric]:.3g}" + (f" ({others})" if others else "")


class StepFacts:
    """Describe finished steps; remembers each track's resolved config and registered version on the way.

    Args:
        tracks: The compiled-in config of each track (used until the track's ``configure`` step
            returns the resolved one).
        client_for: A registry client for a tracking URI (``rsvl.model_registry.registry_client``).
    """

    def __init__(self, tracks: Mapping[str, RunConfig], client_for: Callable[[str], Any] | None = None) -> None:
        from rsvl.model_registry import registry_client

        self.configs = dict(tracks)
        self.versions: dict[str, int] = {}
        self.client_for = client_for or registry_client

    def __call__(self, result: StepResult) -> str:
        """The fact of ``result`` (empty when the step has none)."""
        describe = getattr(self, f"_{result.step}", None)
        return describe(result, self.configs[result.track]) if describe else ""

    def _client(self, cfg: RunConfig):
        return self.client_for(cfg.mlflow.tracking_uri)

    def _configure(self, result: StepResult, cfg: RunConfig) -> str:
        self.configs[result.track] = resolved = RunConfig.model_validate_json(result.outputs["Output"])
        return f"config valid: model {resolved.model.name}, {resolved.train.epochs} epochs, lr {resolved.train.lr:g}"

    def _data(self, result: StepResult, _cfg: RunConfig) -> str:
        kept, quarantined = dataset_rows(_path(result.outputs[DATASET_OUTPUTS[result.step]]))
        version = result.outputs.get("Output")
        return f"{kept} rows kept, {quarantined} quarantined" + (f" (data {str(version)[:12]})" if version else "")

    _ingest = _filter = _data

    def _caption(self, result: StepResult, cfg: RunConfig) -> str:
        routes = caption_routes(_path(result.outputs[DATASET_OUTPUTS["caption"]]))
        listed = ", ".join(f"{route} {count}" for route, count in routes.items())
        return self._data(result, cfg) + (f"; captions by route: {listed}" if listed else "")

    def _train(self, result: StepResult, _cfg: RunConfig) -> str:
        values = artifact_metrics(result.outputs["metrics"])
        loss = values.get("loss")
        text = f"final loss {loss:.4f}" if loss is not None else "no loss logged"
        return text + (f" after {int(values['steps'])} steps" if "steps" in values else "")

    def _vqa(self, result: StepResult, _cfg: RunConfig) -> str:
        values = artifact_metrics(result.outputs["metrics"])
        return _value(VQA_HEADLINE, values) if VQA_HEADLINE in values else ""

    def _evaluate(self, result: StepResult, cfg: RunConfig) -> str:
        values = artifact_metrics(result.outputs["metrics"])
        shown = [metric for metric in headline_metrics(cfg) if metric in values and metric != VQA_HEADLINE]
        return _value(shown[0], values) if shown else "no headline metric logged"

    def _register(self, result: StepResult, cfg: RunConfig) -> str:
        version = self.versions[result.track] = int(result.outputs["Output"])
        aliases = self._client(cfg).get_model_version(cfg.registry.model_name, str(version)).aliases
        return f"{cfg.registry.model_name} v{version} (aliases: {', '.join(sorted(aliases)) or 'none'})"

    def _gate(self, result: StepResult, cfg: RunConfig) -> str:
        version = self.versions.get(result.track)
        if version is None:
            return "passed" if result.outputs.get("Output") else "rejected"
        report = _path(result.outputs["report"]) if "report" in result.outputs else None
        if report is not None and report.is_file() and ALREADY_CHAMPION in report.read_text().partition("\n")[0]:
            return f"v{version} {ALREADY_CHAMPION}: kept as it is, nothing scored"  # its recorded decision is older
        tags = self._client(cfg).get_model_version(cfg.registry.model_name, str(version)).tags
        reasons = tags.get("gate.reasons", "")
        reasons = reasons if len(reasons) <= REASONS_SHOWN else reasons[:REASONS_SHOWN - 3] + "..."
        return f"v{version} {tags.get('gate.decision', 'not recorded')}: {reasons}".rstrip(": ")

    def _promote(self, result: StepResult, cfg: RunConfig) -> str:
        return f"{cfg.registry.model_name} champion -> v{result.outputs['Output']}"
