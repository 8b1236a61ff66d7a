"""The ``gate`` step: score candidate and champion on the same pinned data now, decide, record, promote.

The candidate is a registry version; the champion is whatever ``champion`` points at. Both are
downloaded from the registry and scored by the same code on the same prepared eval sets in one
MLflow run (``gate-<name>-v<version>``), so their numbers are comparable. The decision
(:func:`rsvl.gate.decide`), its reasons and the metric deltas become tags of the candidate version
and a Markdown report; only a passing candidate moves the ``champion`` alias. A candidate that
already is the champion (a re-run with nothing changed) is left as it is.
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
                # scoring needs torch and open_clip: imported here, so the promote step starts in a second or two
                from rsvl.evaluate.pinned_data import prepare_eval_data
                from rsvl.steps.evaluation import log_evaluation, run_evaluation

                eval_data = prepare_eval_data(cfg, data_root)
                candidate = run_evaluation(cfg, download_model_dir(client, name, version, Path(scratch) / "candidate"),
                                           out / "candidate", data_root=data_root, eval_data=eval_data,
                                           title=f"{name} v{version} (candidate)")
                log_evaluation(uri, run_id, candidate, prefix="candidate.", artifact_dir="candidate")
                champion_metrics = None
                if champion is not None:
                    scored = run_evaluation(cfg, download_model_dir(client, name, champion, Path(scratch) / "champion"),
                                            out / "champion", data_root=data_root, eval_data=eval_data,
                                            title=f"{name} v{champion} (champion)")
                    log_evaluation(uri, run_id, scored, prefix="champion.", artifact_dir="champion")
                    champion_metrics = scored.metrics
                decision = decide(cfg.gate, candidate.metrics, champion_metrics,
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
