"""The ``gate`` step: score candidate and champion on the same pinned data now, decide, record, promote.

The candidate is a registry version; the champion is whatever ``champion`` points at. Both are
downloaded from the registry and scored by the same code on the same prepared eval sets in one
MLflow run (``gate-<name>-v<version>``), so their numbers are comparable. The decision
(:func:`rsvl.gate.decide`), its reasons and the metric deltas become tags of the candidate version
and a Markdown report; only a passing candidate moves the ``champion`` alias. A candidate that
already is the champion (a re-run with nothing changed) is left as it is.

A model the evaluate step already scored on the same data, with the same code and settings, is not
scored again: its recorded scores are reused (:mod:`rsvl.steps.recorded_scores`, matched by a
fingerprint computed from the downloaded files), and the gate run's ``gate.scores.<role>`` tag
says which scores were reused and from which run.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from rsvl.config import RunConfig
from rsvl.errors import ConfigError, ModelError
from rsvl.gate import GateDecision, decide, gate_markdown
from rsvl.mlflow_store import experiment_id, resolve_tracking_uri
from rsvl.model_registry import download_model_dir, get_champion, registry_client, set_champion

REPORT_FILE = "gate.md"
DECISION_TAG, REASONS_TAG, AGAINST_TAG, RUN_TAG = "gate.decision", "gate.reasons", "gate.champion_version", "gate.run_id"
DELTA_TAG = "gate.delta.{metric}"
SCORES_TAG = "gate.scores.{role}"
"""Gate run tag: ``scored`` (scored by the gate) or ``reused <run id>`` (the evaluate step's recorded scores)."""
SCORED, REUSED = "scored", "reused"
PASSED, PROMOTED, REJECTED, ALREADY = "passed", "promoted", "rejected", "already_champion"
TAG_LIMIT = 5000


@dataclass(frozen=True)
class GateOutcome:
    """What the gate did.

    Attributes:
        decision: The decision with reasons, metrics and deltas.
        verdict: ``promoted``, ``passed`` (not promoted yet: ``promote=False``), ``rejected`` or
            ``already_champion``.
        champion: The version ``champion`` points at afterwards (``None``: still no champion).
        report: The Markdown report.
        mlflow_run_id: The gate's MLflow run (both models' metrics, reports, decision).
    """

    decision: GateDecision
    verdict: str
    champion: int | None
    report: Path
    mlflow_run_id: str


def _record(client, name: str, version: int, decision: GateDecision, verdict: str, run_id: str, cfg: RunConfig) -> None:
    ruled = set(cfg.gate.minimums) | set(cfg.gate.min_improvement) | set(cfg.gate.max_regression)
    tags = {
        DECISION_TAG: verdict,
        REASONS_TAG: "; ".join(decision.reasons)[:TAG_LIMIT],
        AGAINST_TAG: decision.champion_version or "none",
        RUN_TAG: run_id,
        **{DELTA_TAG.format(metric=m): f"{d:+.6g}" for m, d in decision.deltas.items() if m in ruled},
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)


class _Scorer:
    """Scores a registry version on the gate's eval data: the recorded scores when they still hold, else anew.

    The recorded scores are those the evaluate step logged into the version's run with the same
    fingerprint (:mod:`rsvl.steps.recorded_scores`); either way they are logged into the gate's
    run as ``<role>.<eval set>.<metric>`` and the run's ``gate.scores.<role>`` tag says which.
    """

    def __init__(self, cfg: RunConfig, client, uri: str, run_id: str, name: str, eval_data, out: Path,
                 scratch: Path, data_root: str | Path | None) -> None:
        self.cfg, self.client, self.uri, self.run_id, self.name = cfg, client, uri, run_id, name
        self.eval_data, self.out, self.scratch, self.data_root = eval_data, out, scratch, data_root

    def __call__(self, version: int, role: str) -> dict[str, float]:
        from mlflow.entities import Metric

        from rsvl.steps.recorded_scores import recorded_metrics, score_fingerprint

        model_dir = download_model_dir(self.client, self.name, version, self.scratch / role)
        source_run = self.client.get_model_version(self.name, str(version)).run_id
        metrics = recorded_metrics(self.client, source_run, score_fingerprint(self.cfg, model_dir, self.eval_data))
        if metrics is not None:
            self.client.log_batch(self.run_id, metrics=[Metric(f"{role}.{key}", value, 0, 0)
                                                        for key, value in metrics.items()])
            self.client.set_tag(self.run_id, SCORES_TAG.format(role=role), f"{REUSED} {source_run}")
            return metrics
        # scoring needs torch and open_clip: imported here, so the promote step starts in a second or two
        from rsvl.steps.evaluation import log_evaluation, run_evaluation

        scored = run_evaluation(self.cfg, model_dir, self.out / role, data_root=self.data_root,
                                eval_data=self.eval_data, title=f"{self.name} v{version} ({role})")
        log_evaluation(self.uri, self.run_id, scored, prefix=f"{role}.", artifact_dir=role)
        self.client.set_tag(self.run_id, SCORES_TAG.format(role=role), SCORED)
        return scored.metrics


def promote_candidate(cfg: RunConfig, version: int) -> int:
    """Move ``champion`` to a version the gate passed (the pipeline's ``dsl.If`` branch).

    Args:
        cfg: The run config (registered name, tracking store).
        version: The candidate's version.

    Returns:
        The version ``champion`` points at now.

    Raises:
        ModelError: The version was not passed by the gate (its ``gate.decision`` tag is not
            ``passed``); promotion never happens without a recorded decision.
    """
    name = cfg.registry.model_name
    client = registry_client(resolve_tracking_uri(cfg.mlflow.tracking_uri))
    decision = client.get_model_version(name, str(version)).tags.get(DECISION_TAG)
    if decision not in (PASSED, PROMOTED):
        raise ModelError(f"{name} v{version}: gate decision is {decision!r}, not {PASSED!r}; refusing to promote it")
    set_champion(client, name, version)
    client.set_model_version_tag(name, str(version), DECISION_TAG, PROMOTED)
    return version


def run_gate(
    cfg: RunConfig, version: int, out_dir: str | Path, *, data_root: str | Path | None = None, promote: bool = True
) -> GateOutcome:
    """Decide whether registry version ``version`` of ``cfg.registry.model_name`` becomes champion.

    Args:
        cfg: The run config (gate thresholds, eval sets, registered name, tracking store).
        version: The candidate's version.
        out_dir: Receives ``gate.md`` and the evaluation reports of both models.
        data_root: Where relative eval datasets live (default ``cfg.data.root``).
        promote: Move ``champion`` to a passing candidate now; ``False`` only records the
            ``passed`` decision for :func:`promote_candidate` (the pipeline promotes in a
            ``dsl.If`` branch).

    Returns:
        The :class:`GateOutcome`.

    Raises:
        ConfigError: The config has no ``gate`` section.
        ModelError: A version does not exist or cannot be scored.
        DataError: The eval data is missing, modified or not the pinned version.
    """
    if cfg.gate is None:
        raise ConfigError(f"config of {cfg.paper!r} ({cfg.profile}) has no gate section; promotion needs thresholds")
    name, uri = cfg.registry.model_name, resolve_tracking_uri(cfg.mlflow.tracking_uri)
    client = registry_client(uri)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    champion = get_champion(name, client)
    run = client.create_run(experiment_id(client, uri, cfg.mlflow.experiment), run_name=f"gate-{name}-v{version}",
                            tags={"rsvl.step": "gate", "rsvl.model": name, "rsvl.candidate_version": str(version)})
    run_id = run.info.run_id
    try:
        with tempfile.TemporaryDirectory(prefix="rsvl-gate-") as scratch:
            if champion == version:
                decision = GateDecision(promote=False, reasons=[f"version {version} already is the champion"],
                                        champion_version=str(version))
                verdict = ALREADY
            else:
                from rsvl.evaluate.pinned_data import prepare_eval_data

                eval_data = prepare_eval_data(cfg, data_root)
                score = _Scorer(cfg, client, uri, run_id, name, eval_data, out, Path(scratch), data_root)
                candidate_metrics = score(version, "candidate")
                champion_metrics = score(champion, "champion") if champion is not None else None
                decision = decide(cfg.gate, candidate_metrics, champion_metrics,
                                  str(champion) if champion is not None else None)
                verdict = PASSED if decision.promote else REJECTED
        report = out / REPORT_FILE
        report.write_text(gate_markdown(decision, name, str(version)), encoding="utf-8")
        client.log_artifact(run_id, str(report))
        if verdict != ALREADY:
            _record(client, name, version, decision, verdict, run_id, cfg)
        if decision.promote and promote:
            verdict = PROMOTED
            promote_candidate(cfg, version)
        client.set_tag(run_id, DECISION_TAG, verdict)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return GateOutcome(decision, verdict, get_champion(name, client), report, run_id)
