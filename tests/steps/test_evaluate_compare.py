"""Comparison models scored beside the candidate: ablations of a train output, the untuned base model.

Every comparison is scored by the same code on the same prepared sets, keyed
``<name>.<eval set>.<metric>``, logged into the candidate's MLflow run and put side by side with the
candidate's metrics at the top of the report. The gate scores none of them.
"""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from rsvl.cli import app
from rsvl.config import RunConfig, write_config_file
from rsvl.data.dataset import ManifestDataset
from rsvl.data.generate import write_optical_scenes, write_s1s2_patches
from rsvl.errors import ConfigError, ModelError
from rsvl.evaluate.runner import evaluate_model
from rsvl.mlflow_store import experiment_id
from rsvl.models import build_model, load_model, save_model
from rsvl.models.multisensor import build_sensor_model
from rsvl.steps.evaluation import UNTUNED, base_model, comparison_models, run_evaluation
from rsvl.steps.promotion import run_gate
from rsvl.steps.registration import run_register
from rsvl.train.checkpoint import ABLATIONS_DIR, MODEL_DIR
from rsvl.train.data import image_inputs
from rsvl.train.progressive import stage_config

MERGED_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mR")
RETRIEVAL_KEYS = (*MERGED_KEYS, *(f"std_{key}" for key in MERGED_KEYS))
"""Identical captions merged, then the standard protocol (each caption its own answer)."""


ABLATED = {"stages": [{"name": "optical"}, {"name": "sar"}], "ablations": [{"name": "sar_only", "stages": ["sar"]}]}
"""A progression whose train step writes ``ablations/sar_only/model``."""


def settings(root, train: dict | None = None, **evaluate) -> dict:
    return {
        "paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
        "data": {"root": str(root)}, "train": train or {},
        "evaluate": {"sets": [{"name": "opt", "dataset": "optical", "split": None, "tasks": ["retrieval"]}],
                     "cache_dir": str(root / "cache"), **evaluate},
        "gate": {"minimums": {"opt.mR": 0.0}},
        "registry": {"model_name": "compare_test"},
        "mlflow": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "test-compare"},
    }


def save_tiny(seed: int, out) -> None:
    torch.manual_seed(seed)
    save_model(build_model("rsvl-tiny")[0], out)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Optical scenes and a train output: ``model/`` (seed 0) and ``ablations/sar_only/model`` (seed 2)."""
    root = tmp_path_factory.mktemp("compare")
    write_optical_scenes(root / "optical", per_class=4)
    save_tiny(0, root / "train" / MODEL_DIR)
    save_tiny(2, root / "train" / ABLATIONS_DIR / "sar_only" / MODEL_DIR)
    return root


@pytest.fixture(scope="module")
def compared(root):
    """The candidate evaluated beside its ablation, logged into a fresh MLflow run."""
    cfg = RunConfig.model_validate(settings(root, ABLATED))
    client = MlflowClient(cfg.mlflow.tracking_uri)
    run = client.create_run(experiment_id(client, cfg.mlflow.tracking_uri, cfg.mlflow.experiment))
    evaluation = run_evaluation(cfg, root / "train" / MODEL_DIR, root / "eval", mlflow_run_id=run.info.run_id,
                                compare=comparison_models(cfg, root / "train"))
    return cfg, evaluation, client.get_run(run.info.run_id)


def test_comparison_models_are_the_configured_ablations_of_a_train_output(root, tmp_path):
    ablated, plain = RunConfig.model_validate(settings(root, ABLATED)), RunConfig.model_validate(settings(root))
    assert comparison_models(ablated, root / "train") == \
        {"sar_only": root / "train" / ABLATIONS_DIR / "sar_only" / MODEL_DIR}
    assert comparison_models(plain, tmp_path) == {}
    with pytest.raises(ModelError, match=r"\['sar_only'\] are no ablations of this config \(train.ablations: \[\]\)"):
        comparison_models(plain, root / "train")
    with pytest.raises(ModelError, match="ablation 'sar_only' of train.ablations: .* holds no saved model"):
        comparison_models(ablated, tmp_path)
    (tmp_path / ABLATIONS_DIR / "sar_only").mkdir(parents=True)
    with pytest.raises(ModelError, match="ablation 'sar_only' of train.ablations: .* holds no saved model"):
        comparison_models(ablated, tmp_path)
    (tmp_path / ABLATIONS_DIR / "old_run").mkdir()
    with pytest.raises(ModelError, match=r"\['old_run'\] are no ablations"):
        comparison_models(ablated, tmp_path)


def test_an_ablation_is_scored_on_the_same_sets_under_its_own_prefix(compared, root):
    _, evaluation, _ = compared
    assert set(evaluation.compared) == {"sar_only"}
    assert set(evaluation.metrics) == {f"opt.{key}" for key in RETRIEVAL_KEYS}
    assert set(evaluation.comparison_metrics) == {f"sar_only.opt.{key}" for key in RETRIEVAL_KEYS}
    assert evaluation.comparison_metrics["sar_only.opt.mR"] != evaluation.metrics["opt.mR"]
    alone = evaluate_model(root / "train" / ABLATIONS_DIR / "sar_only" / MODEL_DIR, evaluation.data.sets,
                           root / "alone")
    assert {f"sar_only.{k}": v for k, v in alone.metrics.items()} == pytest.approx(evaluation.comparison_metrics)


def test_the_report_opens_with_the_side_by_side_table(compared):
    _, evaluation, _ = compared
    candidate, ablation = evaluation.metrics["opt.mR"], evaluation.comparison_metrics["sar_only.opt.mR"]
    markdown = evaluation.result.report_md.read_text(encoding="utf-8")
    header = "| metric | candidate | sar_only | candidate − sar_only |"
    row = f"| opt.mR | {candidate:.4g} | {ablation:.4g} | {candidate - ablation:+.4g} |"
    assert header in markdown and row in markdown
    assert markdown.index(header) < markdown.index("## opt:")
    page = evaluation.result.report_html.read_text(encoding="utf-8")
    assert "<th>candidate − sar_only</th>" in page and page.index("candidate − sar_only") < page.index("<h2>opt:")
    assert (evaluation.result.report_md.parent / "compare.sar_only" / "report.md").is_file()


def test_comparison_metrics_are_logged_beside_the_candidates(compared):
    _, evaluation, run = compared
    logged = run.data.metrics
    assert logged["opt.mR"] == pytest.approx(evaluation.metrics["opt.mR"])
    assert logged["sar_only.opt.mR"] == pytest.approx(evaluation.comparison_metrics["sar_only.opt.mR"])
    assert {key for key in logged if key.startswith("sar_only.")} == set(evaluation.comparison_metrics)


def test_comparison_names_must_make_unambiguous_metric_keys(root):
    cfg = RunConfig.model_validate(settings(root))
    model = root / "train" / MODEL_DIR
    for name in ("candidate", "champion", "opt", "a.b", "two words"):
        with pytest.raises(ConfigError, match=re.escape(repr(name))):
            run_evaluation(cfg, model, root / "bad", compare={name: model})
    with pytest.raises(ConfigError, match="compare_base adds another 'base'"):
        run_evaluation(cfg, model, root / "bad", compare={UNTUNED: model}, compare_base=True)


def test_the_cli_takes_comparisons_as_name_equals_path(root, tmp_path):
    config = write_config_file(RunConfig.model_validate(settings(root)), tmp_path / "config.yaml")
    ablation = root / "train" / ABLATIONS_DIR / "sar_only" / MODEL_DIR
    base = ["evaluate", "--config", str(config), "--model", str(root / "train" / MODEL_DIR), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*base, "--compare", f"sar_only={ablation}"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^sar_only\.opt\.mR: \d+\.\d{4}$", result.output, re.M)
    assert re.search(r"^opt\.mR: \d+\.\d{4}$", result.output, re.M)
    result = CliRunner().invoke(app, [*base, "--compare", str(ablation)])
    assert result.exit_code == 1 and "--compare takes name=model_dir" in result.output


def same_weights(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_the_untuned_base_model_is_deterministic():
    cfg = RunConfig.model_validate({"paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny-coca"},
                                    "train": {"seed": 3}})
    candidate = build_model("rsvl-tiny-coca")
    first, second = base_model(cfg, candidate)[0].state_dict(), base_model(cfg, candidate)[0].state_dict()
    assert same_weights(first, second)
    torch.manual_seed(3)
    assert same_weights(first, build_model("rsvl-tiny-coca")[0].state_dict())


def test_the_base_model_takes_the_image_input_training_took_from_its_data(tmp_path):
    """Two SAR bands with their statistics: the base widens its first convolution as the start model did."""
    write_s1s2_patches(tmp_path / "s1s2", count=12)
    cfg = RunConfig.model_validate({"paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
                                    "train": {"seed": 5, "image_column": "s1"}})
    in_bands, band_stats = image_inputs(ManifestDataset(tmp_path / "s1s2", split="train"), "s1")
    torch.manual_seed(5)
    start = build_model("rsvl-tiny", None, in_bands, band_stats)[0]
    candidate = save_model(start, tmp_path / "candidate")
    base = base_model(cfg, candidate)[0]
    assert in_bands == 2 and base.rsvl_spec["in_bands"] == 2
    assert {k: base.rsvl_spec[k] for k in ("bands", "normalisation")} == \
        {k: start.rsvl_spec[k] for k in ("bands", "normalisation")}
    assert same_weights(base.state_dict(), start.state_dict())
    with pytest.raises(ConfigError, match="is a 'rsvl-tiny' model, not a fine-tuned model.name 'rsvl-tiny-coca'"):
        base_model(cfg.model_copy(update={"model": cfg.model.model_copy(update={"name": "rsvl-tiny-coca"})}),
                   candidate)


def test_the_base_of_a_sensor_model_is_its_seeded_start_tower_by_tower(tmp_path):
    """CLOSP/GeoCLOSP: one tower per sensor, each with the bands and normalisation its spec records."""
    s1 = {"bands": ["VV", "VH"], "mean": [-11.0, -18.0], "std": [4.0, 5.0]}
    s2_bands = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    s2 = {"bands": s2_bands, "mean": [900.0 + 50 * i for i in range(12)], "std": [300.0 + 5 * i for i in range(12)]}
    location = {"legendre_polys": 4, "hidden": 16, "layers": 1}
    cfg = RunConfig.model_validate({
        "paper": "closp", "profile": "local", "train": {"seed": 7, "sensors": ["s1", "s2"]},
        "model": {"name": "rsvl-effnetlite0-minilm-cls", "pretrained": "packaged", "image_size": 32,
                  "location": location}})
    torch.manual_seed(7)
    start = build_sensor_model(cfg.model.name, "packaged", {"s1": (2, s1), "s2": (12, s2)}, image_size=32,
                               location=location)[0]
    base = base_model(cfg, save_model(start, tmp_path / "candidate"))[0]
    assert base.rsvl_spec["sensors"] == start.rsvl_spec["sensors"]
    assert base.rsvl_spec["sensors"]["s2"]["normalisation"] == {"mean": s2["mean"], "std": s2["std"]}
    assert same_weights(base.state_dict(), start.state_dict())  # projections and location encoder included


def test_the_base_of_a_progressive_plan_is_the_fresh_model_its_first_stage_starts_from(root):
    """SAR-RS-CLIP's base: the seeded ``cfg.model`` before the optical stage (the ``sar_only`` ablation's start too)."""
    plan = RunConfig.model_validate(settings(root, {**ABLATED, "seed": 6}))
    base = base_model(plan, root / "train" / MODEL_DIR)[0]
    torch.manual_seed(6)
    assert same_weights(base.state_dict(), build_model("rsvl-tiny")[0].state_dict())
    first = stage_config(plan, plan.train.stages[0], plan.train.init_from)
    assert (first.train.init_from, first.train.seed, first.model) == (None, 6, plan.model)


def test_the_base_model_is_train_init_from_when_set(tmp_path):
    torch.manual_seed(11)
    init = save_model(build_model("rsvl-tiny")[0], tmp_path / "init")
    cfg = RunConfig.model_validate({"paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
                                    "train": {"init_from": str(init)}})
    assert same_weights(base_model(cfg, tmp_path / "anything")[0].state_dict(), load_model(init)[0].state_dict())
    missing = cfg.model_copy(update={"train": cfg.train.model_copy(update={"init_from": str(tmp_path / "gone")})})
    with pytest.raises(ConfigError, match="train.init_from .*gone.*: no saved model there"):
        base_model(missing, tmp_path / "anything")


def test_the_gate_scores_no_comparisons(root):
    cfg = RunConfig.model_validate(settings(root, compare_base=True))
    registration = run_register(cfg, root / "train" / MODEL_DIR, root / "optical", "pipeline-compare")
    outcome = run_gate(cfg, registration.version, root / "gate")
    metrics = MlflowClient(cfg.mlflow.tracking_uri).get_run(outcome.mlflow_run_id).data.metrics
    assert set(metrics) == {f"candidate.opt.{key}" for key in RETRIEVAL_KEYS}


@pytest.mark.slow
def test_compare_base_scores_the_untuned_coca_captioner_on_narrated_single_band_sar(repo_root, default_data, tmp_path):
    """The captioner track's evaluation: a 3-band tiny CoCa captions 1-band SAR chips, beside the base CoCa."""
    cfg = RunConfig.model_validate({
        "paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny-coca", "pretrained": None},
        "data": {"root": str(default_data.parent)},
        "evaluate": {"sets": [{"name": "sar_test", "dataset": "default/sar", "split": "test",
                               "tasks": ["captioning"], "narrate": True, "limit": 3}],
                     "cache_dir": str(tmp_path / "cache"), "java_metrics": False, "compare_base": True},
    })
    torch.manual_seed(7)
    save_model(build_model("rsvl-tiny-coca")[0], tmp_path / "coca")
    evaluation = run_evaluation(cfg, tmp_path / "coca", tmp_path / "eval", compare_base=cfg.evaluate.compare_base)

    chips = ManifestDataset(evaluation.data.sets[0].dataset, split="test")
    assert chips[0]["image"].shape[0] == 1 and load_model(tmp_path / "coca")[0].rsvl_spec["in_bands"] == 3
    assert {"sar_test.CIDEr", "sar_test.BLEU_4"} <= set(evaluation.metrics)
    assert {"base.sar_test.CIDEr", "base.sar_test.BLEU_4"} <= set(evaluation.comparison_metrics)
    generated = evaluation.compared[UNTUNED].details.read_text(encoding="utf-8")
    assert '"generated"' in generated
    markdown = evaluation.result.report_md.read_text(encoding="utf-8")
    assert "| metric | candidate | base | candidate − base |" in markdown and "| sar_test.CIDEr |" in markdown


@pytest.mark.skipif(shutil.which("java") is None, reason="java not on PATH: METEOR needs it")
@pytest.mark.parametrize("tasks, started", [(["captioning"], True), (["retrieval"], False)])
def test_an_evaluation_with_captioning_starts_meteor_before_anything_else(tmp_path, tasks, started):
    """The JVM loads its tables while the data and models load: it is running even when the data is missing."""
    from rsvl.errors import DataError
    from rsvl.evaluate import captioning

    captioning._close_meteor()
    cfg = settings(tmp_path)
    cfg["evaluate"]["sets"][0]["tasks"] = tasks
    with pytest.raises(DataError):
        run_evaluation(RunConfig.model_validate(cfg), tmp_path / "no-model", tmp_path / "out")
    assert bool(captioning._METEOR) is started
    captioning._close_meteor()
