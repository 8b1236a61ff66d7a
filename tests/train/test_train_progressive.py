"""Progressive transfer: optical then SAR stages, each its own MLflow run, and a SAR-only ablation on the same budget.

One plan of the tiny model runs once for the module (Ray Train local mode, a real MLflow sqlite
store in a tmp folder): stage ``optical`` (6 steps on generated optical scenes, three bands) and
stage ``sar`` (3 steps on generated single-band SAR chips, the run's own dataset, repeated into
the RGB tower), then the ablation ``sar_only`` (the ``sar`` stage alone, from the same start,
with all 9 steps). The tests read what it left: runs and tags, weights, step budgets, folders; a
second launch under the same name must train nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from safetensors.torch import load_file

from rsvl.config import RunConfig, StageConfig
from rsvl.data.dataset import ManifestDataset
from rsvl.data.generate import write_optical_scenes, write_sar_chips
from rsvl.errors import ConfigError, DataError
from rsvl.evaluate.retrieval import evaluate_retrieval
from rsvl.evaluate.runner import evaluate_model
from rsvl.models import build_model, load_model
from rsvl.models.bands import first_conv
from rsvl.models.io import WEIGHTS_NAME
from rsvl.steps.training import summary_metrics
from rsvl.train import fit, train_plan
from rsvl.train.data import check_bands_fit, image_inputs
from rsvl.train.progressive import (
    ABLATION_TAG,
    PROGRESSION_TAG,
    STAGE_TAG,
    ablation_budget,
    stage_config,
)

EXPERIMENT = "test-progressive"
NAME = "sar_text-progressive"
OPTICAL_STEPS, SAR_STEPS = 6, 3


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Data root (``default/optical``), the SAR run dataset, Ray storage and the MLflow store."""
    root = tmp_path_factory.mktemp("progressive")
    write_optical_scenes(root / "data" / "default" / "optical", seed=0, per_class=12)
    write_sar_chips(root / "sar", seed=0, count=60)
    return root


def tracking_uri(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


def plan_config(workdir: Path, **train: object) -> RunConfig:
    settings = dict(
        num_workers=0, cpus_per_worker=2, batch_size=16, lr=1e-3, warmup_steps=1, log_every=1, checkpoint_every=4,
        max_failures=0, storage_path=str(workdir / "ray"), dataset="default/sar",
        stages=[{"name": "optical", "dataset": "default/optical", "max_steps": OPTICAL_STEPS},
                {"name": "sar", "max_steps": SAR_STEPS, "lr": 5e-4}],
        ablations=[{"name": "sar_only", "stages": ["sar"]}, {"name": "sar_direct", "stages": ["sar"], "budget": "stages"}],
    )
    return RunConfig.model_validate({
        "paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
        "data": {"root": str(workdir / "data")},
        "train": {**settings, **train},
        "mlflow": {"tracking_uri": tracking_uri(workdir), "experiment": EXPERIMENT},
    })


@pytest.fixture(scope="module")
def plan(workdir):
    """The plan's result, trained once into ``workdir/out``."""
    return train_plan(plan_config(workdir), workdir / "sar", workdir / "out", run_name=NAME)


def runs_of(workdir: Path, **tags: str) -> list:
    client = MlflowClient(tracking_uri(workdir))
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    where = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    return client.search_runs([experiment], filter_string=where)


def loss_steps(workdir: Path, run_id: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(tracking_uri(workdir)).get_metric_history(run_id, "loss"))


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / WEIGHTS_NAME))


def test_each_stage_is_a_tagged_mlflow_run_of_its_own_data_and_length(plan, workdir):
    assert list(plan.stages) == ["optical", "sar"] and plan.stage == "sar"
    assert plan.run_name == f"{NAME}-sar" and plan.mlflow_run_id == plan.stages["sar"].mlflow_run_id
    for stage, steps, lr, dataset in (("optical", OPTICAL_STEPS, "0.001", workdir / "data/default/optical"),
                                      ("sar", SAR_STEPS, "0.0005", workdir / "sar")):
        (run,) = [r for r in runs_of(workdir, **{PROGRESSION_TAG: NAME, STAGE_TAG: stage})
                  if ABLATION_TAG not in r.data.tags]
        assert run.info.run_id == plan.stages[stage].mlflow_run_id and run.info.status == "FINISHED"
        assert run.data.tags["rsvl.run_name"] == run.info.run_name == f"{NAME}-{stage}"
        assert run.data.tags["dataset_dir"] == str(dataset.resolve())
        assert run.data.params["train.max_steps"] == str(steps) and run.data.params["train.lr"] == lr
        assert run.data.params["train.stages"] == "[]"
        assert loss_steps(workdir, run.info.run_id) == list(range(1, steps + 1))
        assert plan.stages[stage].metrics["test_mR"] > 0
    assert len(runs_of(workdir, **{PROGRESSION_TAG: NAME})) == 4  # two stages, two one-stage ablations


def test_stage_two_starts_from_stage_one_weights_with_the_band_repeated(plan, workdir):
    first = workdir / "out" / "stages" / "optical" / "model"
    model, _, preprocess, tokenizer = load_model(first)
    assert model.rsvl_spec["in_bands"] == 3 and ManifestDataset(workdir / "sar")[0]["image"].shape[0] == 1
    on_sar = evaluate_retrieval(model, preprocess, tokenizer, workdir / "sar", "test")
    assert plan.stages["sar"].baseline["test_mR"] == pytest.approx(on_sar["mR"], abs=1e-6)
    assert plan.stages["optical"].metrics["test_mR"] != pytest.approx(on_sar["mR"], abs=1e-6)
    trained = weights(workdir / "out" / "model")
    assert any(not torch.equal(trained[key], value) for key, value in weights(first).items())


def test_the_ablation_starts_where_stage_one_did_with_the_whole_step_budget(plan, workdir):
    ablation = plan.ablations["sar_only"]
    total = sum(fitted.steps for fitted in plan.stages.values())
    assert total == OPTICAL_STEPS + SAR_STEPS
    assert list(ablation.stages) == ["sar"] and ablation.steps == total
    (run,) = runs_of(workdir, **{ABLATION_TAG: "sar_only"})
    assert run.info.run_name == f"{NAME}-sar_only-sar" and run.data.tags[STAGE_TAG] == "sar"
    assert run.data.tags[PROGRESSION_TAG] == NAME and run.data.params["train.max_steps"] == str(total)
    assert loss_steps(workdir, run.info.run_id) == list(range(1, total + 1))
    torch.manual_seed(0)
    start, _, preprocess, tokenizer = build_model("rsvl-tiny", None, *image_inputs(ManifestDataset(workdir / "sar")))
    fresh = evaluate_retrieval(start, preprocess, tokenizer, workdir / "sar", "test")
    assert ablation.baseline["test_mR"] == pytest.approx(fresh["mR"], abs=1e-6)
    assert ablation.model_dir == workdir / "out" / "ablations" / "sar_only" / "model"
    assert load_model(ablation.model_dir)[0].rsvl_spec["in_bands"] == 3


def test_outputs_and_summary_show_every_stage_and_ablation(plan, workdir):
    out = workdir / "out"
    assert plan.model_dir == out / "model"
    assert json.loads((out / "config.json").read_text())["train"]["stages"][0]["name"] == "optical"
    shown = summary_metrics(plan)
    assert shown["test_mR"] == shown["stage.sar.test_mR"] == plan.metrics["test_mR"]
    assert shown["stage.optical.test_mR"] == plan.stages["optical"].metrics["test_mR"]
    assert shown["stage.sar.untrained_test_mR"] == plan.stages["sar"].baseline["test_mR"]
    assert shown["ablation.sar_only.test_mR"] == plan.ablations["sar_only"].metrics["test_mR"]
    assert shown["ablation.sar_only.steps"] == OPTICAL_STEPS + SAR_STEPS


def test_eval_scores_single_band_sar_on_the_rgb_model(plan, workdir, tmp_path):
    scored = evaluate_model(plan.model_dir, [{"name": "sar", "dataset": str(workdir / "sar"), "split": "test",
                                              "tasks": ["retrieval"]}], tmp_path, java_metrics=False)
    assert scored.metrics["sar.mR"] == pytest.approx(plan.metrics["test_mR"], abs=1e-6)


def test_a_rerun_by_name_reuses_every_finished_fit(plan, workdir):
    again = train_plan(plan_config(workdir), workdir / "sar", workdir / "again", run_name=NAME)
    fits = [*again.stages.values(), *(fit for name in ("sar_only", "sar_direct")
                                      for fit in again.ablations[name].stages.values())]
    assert all(fitted.reused for fitted in fits) and again.reused
    assert again.mlflow_run_id == plan.mlflow_run_id and again.metrics == plan.metrics
    assert again.ablations["sar_only"].mlflow_run_id == plan.ablations["sar_only"].mlflow_run_id
    assert loss_steps(workdir, plan.mlflow_run_id) == list(range(1, SAR_STEPS + 1))
    assert len(runs_of(workdir, **{PROGRESSION_TAG: NAME})) == 4
    for model in ("model", "ablations/sar_only/model", "stages/optical/model"):
        before, after = weights(workdir / "out" / model), weights(workdir / "again" / model)
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before), model


def test_a_missing_stage_dataset_is_named_before_any_training(workdir):
    cfg = plan_config(workdir, stages=[{"name": "optical", "dataset": "default/nowhere"}, {"name": "sar"}],
                      ablations=[])
    with pytest.raises(DataError, match=r"train.stages 'optical': its dataset .*default/nowhere does not exist"):
        train_plan(cfg, workdir / "sar", workdir / "missing", run_name="sar_text-missing")
    assert not (workdir / "ray" / "sar_text-missing-optical").exists()


def test_init_from_must_hold_a_saved_model(workdir):
    (workdir / "empty-model").mkdir()
    cfg = plan_config(workdir, stages=[], ablations=[], init_from=str(workdir / "empty-model"))
    with pytest.raises(ConfigError, match="train.init_from .*empty-model.*open_clip_model.safetensors is missing"):
        fit(cfg, workdir / "sar", workdir / "no-init", run_name="sar_text-no-init")


def test_an_ablation_on_its_stages_own_budget_runs_the_sar_schedule_from_the_start_weights(plan, workdir):
    """``budget: stages``: the SAR stage's own steps and rate, from the fresh model instead of stage one's."""
    direct = plan.ablations["sar_direct"]
    assert list(direct.stages) == ["sar"] and direct.steps == SAR_STEPS == plan.stages["sar"].steps
    (run,) = runs_of(workdir, **{ABLATION_TAG: "sar_direct"})
    assert run.data.params["train.max_steps"] == str(SAR_STEPS) and run.data.params["train.lr"] == "0.0005"
    assert direct.baseline["test_mR"] == pytest.approx(plan.ablations["sar_only"].baseline["test_mR"], abs=1e-6)
    assert direct.baseline["test_mR"] != pytest.approx(plan.stages["sar"].baseline["test_mR"], abs=1e-6)


def test_band_rules_and_budget_shares():
    check_bands_fit(1, 3, "sar")
    check_bands_fit(12, 12, "s2")
    with pytest.raises(DataError, match="s1: the images have 2 band.*takes 3"):
        check_bands_fit(2, 3, "s1")
    assert ablation_budget({"sar": 3}, 9) == {"sar": 9}
    assert ablation_budget({"optical": 6, "sar": 3}, 9) == {"optical": 6, "sar": 3}
    assert ablation_budget({"a": 1, "b": 1, "c": 1}, 10) == {"a": 4, "b": 3, "c": 3}
    assert ablation_budget({"a": 2, "b": 5}, 11) == {"a": 3, "b": 8}


def test_a_stage_replaces_the_length_and_rate_it_names(tmp_path):
    cfg = plan_config(tmp_path, epochs=3, max_steps=50, lr=1e-3)
    by_epochs = stage_config(cfg, StageConfig(name="a", epochs=2), None)
    assert (by_epochs.train.epochs, by_epochs.train.max_steps, by_epochs.train.lr) == (2, None, 1e-3)
    inherited = stage_config(cfg, StageConfig(name="b", lr=1e-4, dataset="x"), "/m")
    assert (inherited.train.epochs, inherited.train.max_steps, inherited.train.lr) == (3, 50, 1e-4)
    assert inherited.train.dataset == "x" and inherited.train.init_from == "/m" and inherited.train.stages == []
    assert stage_config(cfg, StageConfig(name="c", max_steps=7), None, max_steps=20).train.max_steps == 20


def test_every_fit_name_is_checked_before_the_first_stage_trains(plan, workdir):
    long_name = "p" * 118  # <run>-optical and <run>-sar fit in 128 characters, <run>-sar_only-sar does not
    with pytest.raises(ConfigError, match=rf"run name '{long_name}-sar_only-sar': use 1-128"):
        train_plan(plan_config(workdir), workdir / "sar", workdir / "long", run_name=long_name)
    assert not (workdir / "ray" / f"{long_name}-optical").exists()
    changed = plan_config(workdir, ablations=[],
                          stages=[{"name": "optical2", "dataset": "default/optical", "max_steps": OPTICAL_STEPS},
                                  {"name": "sar", "max_steps": SAR_STEPS + 1, "lr": 5e-4}])
    with pytest.raises(ConfigError, match=rf"fit '{NAME}-sar' was started with another config or data .*"
                                          rf"changed: config train.max_steps: {SAR_STEPS} -> {SAR_STEPS + 1}\."):
        train_plan(changed, workdir / "sar", workdir / "changed", run_name=NAME)
    assert not (workdir / "ray" / f"{NAME}-optical2").exists() and not (workdir / "changed").exists()


def sar_with_band_stats(workdir: Path, folder: str) -> Path:
    """A copy of the SAR chips whose dataset records band statistics for its one band (as dB data would)."""
    copy = workdir / "data" / folder
    if not copy.exists():
        shutil.copytree(workdir / "sar", copy)
        meta = json.loads((copy / "dataset.json").read_text())
        meta["band_stats"] = {"split": "train", "image": {"bands": ["VV"], "mean": [96.0], "std": [40.0]}}
        (copy / "dataset.json").write_text(json.dumps(meta))
    return copy


def test_one_band_with_band_stats_narrows_the_rgb_tower_instead_of_repeating(workdir):
    sar_with_band_stats(workdir, "sar_db")
    stages = [{"name": "optical", "dataset": "default/optical", "max_steps": 2},
              {"name": "sar", "dataset": "sar_db", "max_steps": 1}]
    cfg = plan_config(workdir, stages=stages, ablations=[{"name": "sar_only", "stages": ["sar"]}], eval_split=None)
    result = train_plan(cfg, workdir / "sar", workdir / "narrowed", run_name="sar_text-narrowed")
    optical, _, _, _ = load_model(workdir / "narrowed" / "stages" / "optical" / "model")
    for folder in ("model", "ablations/sar_only/model"):
        model, _, preprocess, _ = load_model(workdir / "narrowed" / folder)
        spec = model.rsvl_spec
        assert (spec["in_bands"], spec["bands"], spec["normalisation"]) == (1, ["VV"], {"mean": [96.0], "std": [40.0]})
        assert first_conv(model.visual)[1].in_channels == 1, folder
        standardised = preprocess(torch.full((1, 80, 80), 96.0))
        assert standardised.shape[0] == 1, folder
        assert torch.allclose(standardised, torch.zeros_like(standardised), atol=1e-5), folder
    assert optical.rsvl_spec["in_bands"] == 3 and result.ablations["sar_only"].steps == 3


def test_a_stage_after_a_narrowing_one_must_take_its_band(workdir):
    sar_with_band_stats(workdir, "sar_db")
    stages = [{"name": "optical", "dataset": "default/optical"}, {"name": "sar", "dataset": "sar_db"},
              {"name": "again", "dataset": "default/optical"}]
    with pytest.raises(DataError, match=r"train.stages 'again' .*3 band\(s\) but the model's image tower takes 1"):
        train_plan(plan_config(workdir, stages=stages, ablations=[]), workdir / "sar", workdir / "bad",
                   run_name="sar_text-again")
    assert not (workdir / "ray" / "sar_text-again-optical").exists()
