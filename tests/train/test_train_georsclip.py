"""GeoRSCLIP's training settings: ablations that train other parameters, their costs, 0-360° rotation,
and the scorer the data steps fit (``curation.fit``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from pipelines.summary import COST_ROWS, _number, funnel_line, headline_metrics
from rsvl.config import RunConfig, StageConfig, load_config
from rsvl.data.generate import write_optical_scenes, write_sar_chips
from rsvl.errors import ConfigError
from rsvl.models.preprocess import Preprocess, RandomRotation
from rsvl.steps.curation_model import fit_config, fit_run_name, load_curation_model, start_config
from rsvl.steps.training import plan_costs
from rsvl.train.fit import FitResult
from rsvl.train.progressive import stage_config

GEORSCLIP = Path(__file__).resolve().parents[2] / "pipelines" / "georsclip" / "config.yaml"


def config(tmp_path: Path, **train: object) -> RunConfig:
    return RunConfig.model_validate({
        "paper": "georsclip", "profile": "local", "model": {"name": "rsvl-tiny"},
        "data": {"root": str(tmp_path / "data")},
        "train": {"lr": 1e-3, "trainable": {"image_tower": "train", "text_tower": "freeze"},
                  "stages": [{"name": "finetune"}], **train},
        "curation": {"fit": {"dataset": "default/optical", "epochs": 1}},
    })


def test_an_ablation_replaces_what_is_trained_and_its_rate_and_nothing_else(tmp_path):
    cfg = config(tmp_path, ablations=[
        {"name": "lora", "stages": ["finetune"], "budget": "stages", "lr": 5e-3,
         "trainable": {"image_tower": "projection", "text_tower": "freeze", "adapter": "lora", "lora_rank": 4}},
        {"name": "same", "stages": ["finetune"], "budget": "stages"}])
    stage = StageConfig(name="finetune")
    lora = stage_config(cfg, stage, None, 10, "lora").train
    assert lora.trainable.model_dump() == {**cfg.train.ablations[0].trainable.model_dump()}
    assert (lora.lr, lora.max_steps, lora.trainable.lora_rank, lora.trainable.adapter) == (5e-3, 10, 4, "lora")
    same = stage_config(cfg, stage, None, 10, "same").train
    assert same.trainable == cfg.train.trainable and same.lr == 1e-3
    main = stage_config(cfg, stage, None).train
    assert main.trainable == cfg.train.trainable and main.lr == 1e-3


def test_plan_costs_prefix_each_ablation_and_sum_its_stages_seconds():
    def fitted(seconds: float, params: float, **extra) -> FitResult:
        return FitResult("r", "id", Path("m"), 5, metrics={"trainable_params": params, "total_params": 100.0,
                                                               "adapter_params": 0.0, "loss": 1.0}, seconds=seconds,
                         **extra)

    lora_stage = fitted(3.0, 7.0)
    result = fitted(11.0, 90.0, ablations={"lora": fitted(3.0, 7.0, stages={"finetune": lora_stage})},
                    stages={"a": fitted(4.0, 90.0), "b": fitted(11.0, 90.0)})
    costs = plan_costs(result)
    assert costs == {"trainable_params": 90.0, "total_params": 100.0, "adapter_params": 0.0, "fit_seconds": 15.0,
                     "lora.trainable_params": 7.0, "lora.total_params": 100.0, "lora.adapter_params": 0.0,
                     "lora.fit_seconds": 3.0}


def test_the_summary_shows_costs_when_an_ablation_trains_other_parameters(tmp_path):
    cfg = load_config(GEORSCLIP, "local")
    assert [row for row in headline_metrics(cfg) if row in COST_ROWS] == list(COST_ROWS)
    assert not set(COST_ROWS) & set(headline_metrics(load_config(GEORSCLIP.parent.parent / "closp" / "config.yaml",
                                                                 "local")))
    assert (_number(1_228_800.0), _number(61440.0), _number(12.5), _number(0.25)) == ("1.23M", "61440.00", "12.50",
                                                                                      "0.250")


def test_random_rotation_rotates_the_augmented_image_by_the_drawn_angle():
    inner = Preprocess((32, 32), [0.0] * 3, [1.0] * 3, train=True)
    rotated = RandomRotation(inner, 360)
    image = torch.arange(3 * 40 * 40, dtype=torch.float32).reshape(3, 40, 40) % 251
    torch.manual_seed(7)
    got = rotated(image)
    torch.manual_seed(7)
    cropped = inner.geometry(image)  # the same draws, in the same order: crop, flips, then the angle
    angle = float(torch.empty(1).uniform_(0.0, 360.0).item())
    expected = TF.rotate(cropped, angle, interpolation=InterpolationMode.BILINEAR, fill=0.0)
    assert torch.equal(got, expected)
    assert not torch.equal(got, cropped)
    with pytest.raises(ValueError, match=r"\(0, 360\]"):
        RandomRotation(inner, 400)
    with pytest.raises(ValueError, match="training augmentation"):
        RandomRotation(Preprocess((32, 32), [0.0] * 3, [1.0] * 3, train=False), 90)
    with pytest.raises(ValueError, match="one-tower models"):
        RunConfig.model_validate({"paper": "closp", "profile": "local", "model": {"name": "rsvl-tiny"},
                                  "train": {"sensors": ["s1", "s2"], "random_rotation": 90}})


def test_the_scorer_fit_is_the_runs_model_and_objective_on_the_fit_dataset(tmp_path):
    cfg = config(tmp_path, ablations=[{"name": "lora", "stages": ["finetune"],
                                       "trainable": {"image_tower": "freeze", "adapter": "lora"}}],
                 random_rotation=360, objective={"name": "clip", "logit_scale": 50.0})
    fitted = fit_config(cfg)
    assert fitted.model == cfg.model and fitted.train.objective == cfg.train.objective
    assert (fitted.train.dataset, fitted.train.epochs, fitted.train.lr, fitted.train.stages, fitted.train.ablations,
            fitted.curation, fitted.train.eval_split) == ("default/optical", 1, 1e-3, [], [], None, None)
    assert fitted.train.trainable == cfg.train.trainable.model_copy(update={"adapter": None})
    with pytest.raises(Exception, match="not a dataset under data.root"):
        fit_run_name(cfg)
    write_optical_scenes(tmp_path / "data" / "default" / "optical", seed=0, per_class=2)
    name = fit_run_name(cfg)
    assert name.startswith("georsclip-curation-") and name == fit_run_name(cfg)
    longer = cfg.model_copy(update={"curation": cfg.curation.model_copy(
        update={"fit": cfg.curation.fit.model_copy(update={"epochs": 2})})})
    assert fit_run_name(longer) != name
    write_optical_scenes(tmp_path / "data" / "default" / "optical", seed=1, per_class=2)  # other data
    assert fit_run_name(cfg) != name


def test_without_a_fit_the_scorer_is_the_configured_model_as_built(tmp_path):
    cfg = config(tmp_path).model_copy(update={"curation": None})
    with pytest.raises(ConfigError, match="no 'curation' section"):
        load_curation_model(cfg)
    built = cfg.model_copy(update={"curation": config(tmp_path).curation.model_copy(update={"fit": None})})
    scorer = load_curation_model(built)
    assert scorer.source == "rsvl-tiny:None" and scorer.fit_run_name is None and not scorer.model.training
    torch.manual_seed(0)
    with torch.no_grad():
        assert scorer.model.encode_text(scorer.tokenizer(["a satellite image."])).shape[0] == 1


def test_training_starts_from_the_scorer_only_when_the_fit_says_so(tmp_path):
    cfg = config(tmp_path)
    assert start_config(cfg) is cfg  # init_training defaults to False: nothing is fitted
    asked = cfg.model_copy(update={"curation": cfg.curation.model_copy(update={
        "fit": cfg.curation.fit.model_copy(update={"init_training": True})})})
    given = asked.model_copy(update={"train": asked.train.model_copy(update={"init_from": "/models/mine"})})
    assert start_config(given) is given  # an explicit start wins
    with pytest.raises(Exception, match="not a dataset under data.root"):
        start_config(asked)  # it would fit: the fit's data must be there


def test_the_funnel_line_lists_each_stage_in_order_and_is_absent_without_a_funnel():
    metrics = {"funnel.rows_in": 180.0, "funnel.rows_kept": 120.0, "funnel.outliers.removed": 9.0,
               "funnel.keyword.removed": 20.0, "funnel.decode.removed": 5.0, "funnel.exact_duplicates.removed": 10.0,
               "funnel.near_duplicates.removed": 16.0}
    assert funnel_line(metrics) == ["  funnel: 180 in; keyword -20, decode -5, exact_duplicates -10, "
                                    "near_duplicates -16, outliers -9; 120 kept"]
    assert funnel_line({"optical_test.mR": 30.0}) == []
