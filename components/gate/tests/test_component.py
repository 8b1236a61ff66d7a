"""The ``gate`` and ``promote`` components' bodies on the session's tiny trained model, in the real sqlite registry.

Each case registers the model under its own name (the library's ``run_register``), so versions and
aliases start empty: a gate minimum of 0 passes it, one of 101 (mR is a percentage) rejects it.
"""

from __future__ import annotations

import pytest
from kfp import dsl

from components.gate.component import gate, promote
from rsvl.config import RunConfig
from rsvl.errors import ModelError
from rsvl.model_registry import CANDIDATE, CHAMPION, registry_client
from rsvl.steps.promotion import DECISION_TAG, PASSED, PROMOTED, REJECTED, RUN_TAG
from rsvl.steps.registration import run_register


def registered(run_config, trained, filtered, name: str, minimum: float) -> RunConfig:
    """``run_config`` under registry name ``name``, gate minimum ``sar_test.mR >= minimum``; the model registered."""
    settings = run_config.model_dump(mode="json")
    settings["registry"]["model_name"] = name
    settings["gate"]["minimums"] = {"sar_test.mR": minimum}
    cfg = RunConfig.model_validate(settings)
    registration = run_register(cfg, f"{trained.model.path}/model", filtered.dataset_dir, "kfp-run",
                                mlflow_run_id=trained.mlflow_run_id)
    assert registration.version == 1 and registration.created
    return cfg


def run_gate(cfg: RunConfig, folder, version: int = 1) -> tuple[bool, str]:
    folder.mkdir(parents=True, exist_ok=True)  # as the KFP executor makes an output's parent folder
    report = dsl.Markdown(uri=str(folder / "gate.md"))
    passed = gate.python_func(config_json=cfg.model_dump_json(), version=version, report=report)
    return passed, (folder / "gate.md").read_text(encoding="utf-8")


def aliases(cfg: RunConfig) -> dict[str, int]:
    model = registry_client(cfg.mlflow.tracking_uri).get_registered_model(cfg.registry.model_name)
    return {alias: int(version) for alias, version in model.aliases.items()}


def test_a_passing_candidate_is_recorded_then_promoted_and_a_rerun_leaves_it(run_config, trained, filtered, tmp_path):
    cfg = registered(run_config, trained, filtered, "component_gate", minimum=0.0)
    passed, report = run_gate(cfg, tmp_path)
    assert passed is True
    assert report.startswith("# Gate: `component_gate` version 1") and "PASS sar_test.mR" in report
    client = registry_client(cfg.mlflow.tracking_uri)
    tags = client.get_model_version("component_gate", "1").tags
    assert tags[DECISION_TAG] == PASSED and tags["gate.champion_version"] == "none"
    gate_run = client.get_run(tags[RUN_TAG])
    candidate = gate_run.data.metrics["candidate.sar_test.mR"]  # scored again now, from the registry
    assert candidate == pytest.approx(trained.metrics.metadata["test_mR"], abs=1e-6)
    assert aliases(cfg) == {CANDIDATE: 1}  # the gate component records the decision; promote moves the alias

    assert promote.python_func(config_json=cfg.model_dump_json(), version=1) == 1
    assert aliases(cfg) == {CANDIDATE: 1, CHAMPION: 1}
    assert client.get_model_version("component_gate", "1").tags[DECISION_TAG] == PROMOTED

    again, report = run_gate(cfg, tmp_path / "again")  # a re-run of the pipeline with nothing changed
    assert again is False and "already is the champion" in report
    assert aliases(cfg) == {CANDIDATE: 1, CHAMPION: 1}
    assert client.get_model_version("component_gate", "1").tags[DECISION_TAG] == PROMOTED


def test_a_rejected_candidate_is_not_promoted(run_config, trained, filtered, tmp_path):
    cfg = registered(run_config, trained, filtered, "component_gate_rejected", minimum=101.0)
    passed, report = run_gate(cfg, tmp_path)
    assert passed is False
    assert report.startswith("# Gate: `component_gate_rejected` version 1 NOT promoted")
    assert "FAIL sar_test.mR" in report
    client = registry_client(cfg.mlflow.tracking_uri)
    assert client.get_model_version("component_gate_rejected", "1").tags[DECISION_TAG] == REJECTED
    with pytest.raises(ModelError, match="gate decision is 'rejected', not 'passed'; refusing to promote it"):
        promote.python_func(config_json=cfg.model_dump_json(), version=1)
    assert aliases(cfg) == {CANDIDATE: 1}
