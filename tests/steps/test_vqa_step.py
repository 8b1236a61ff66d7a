"""The ``vqa`` step and component on the default SAR chips with rsvl-tiny: metrics, files, saved model, MLflow.

One untrained rsvl-tiny CLIP (seeded) stands for the trained SAR-RS-CLIP; the step fits the linear
head on its frozen features in about a second. Its "training run" is a real MLflow run in a
temporary sqlite store, as the train step would leave it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from kfp import dsl
from mlflow import MlflowClient
from PIL import Image
from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from rsvl.config import RunConfig
from rsvl.data.adapters.class_folder import hash_split
from rsvl.data.generate import write_optical_scenes, write_sar_chips
from rsvl.data.store import sha256_file
from rsvl.errors import ConfigError, DataError, ModelError
from rsvl.mlflow_store import experiment_id
from rsvl.models import build_model, load_model, save_model
from rsvl.models.io import WEIGHTS_NAME
from rsvl.steps.evaluation import base_model, comparison_models
from rsvl.steps.vqa import LLAVA_TEST, LLAVA_TRAIN, MODEL_TAG, run_vqa
from rsvl.vqa import (
    QUESTION_TYPES,
    ClipAnswerRanker,
    ClipLinearHead,
    MajorityAnswer,
    answer_vocabulary,
    evaluate_vqa,
    load_vqa_model,
    read_llava,
    read_vqa_config,
    save_vqa_model,
    vqa_from_dataset,
)
from rsvl.vqa.persist import VQA_CONFIG_NAME, VQA_WEIGHTS_NAME
from rsvl.vqa.scoring import RecordImages

EXPERIMENT = "test-vqa"


def config(workdir: Path, vqa: dict | None = None) -> RunConfig:
    return RunConfig.model_validate({
        "paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"}, "vqa": vqa,
        "mlflow": {"tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}", "experiment": EXPERIMENT},
    })


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vqa_step")


@pytest.fixture(scope="module")
def sar_dir(workdir) -> Path:
    """The default SAR chips (``data/default/sar``: 105 train / 23 test, ship boxes, sea/land mask)."""
    write_sar_chips(workdir / "sar", seed=0)
    return workdir / "sar"


@pytest.fixture(scope="module")
def clip_dir(workdir) -> Path:
    """The train step's folder layout: the CLIP at ``train/model``."""
    torch.manual_seed(0)
    return save_model(build_model("rsvl-tiny")[0], workdir / "train" / "model")


@pytest.fixture(scope="module")
def training_run(workdir) -> str:
    """An MLflow run in the config's experiment, standing for the CLIP's training run."""
    uri = config(workdir).mlflow.tracking_uri
    client = MlflowClient(uri)
    return client.create_run(experiment_id(client, uri, EXPERIMENT), run_name="sar_text-clip").info.run_id


@pytest.fixture(scope="module")
def outcome(workdir, sar_dir, clip_dir, training_run):
    return run_vqa(config(workdir, {"model": "linear_head"}), clip_dir, sar_dir, workdir / "out",
                   mlflow_run_id=training_run, device="cpu")


def test_metrics_per_question_type_and_overall_lie_in_the_unit_interval(outcome, sar_dir):
    types = set(QUESTION_TYPES)
    expected = {"vqa.overall", *(f"vqa.{t}" for t in types)}
    expected |= {f"vqa.{b}.{t}" for b in ("majority", "random") for t in ("overall", *types)}
    expected |= {f"vqa.run.{m}.{t}" for m in ("candidate", "majority", "random") for t in ("overall", *types)}
    assert set(outcome.metrics) == expected
    assert all(outcome.metrics[f"vqa.run.candidate.{t}"] == outcome.metrics[f"vqa.{t}"] for t in ("overall", *types))
    assert all(0.0 <= value <= 1.0 for value in outcome.metrics.values())
    scores = outcome.scores["linear_head"]
    test = vqa_from_dataset(sar_dir, "test")
    assert sum(scores.support.values()) == sum(len(r["conversations"]) // 2 for r in test)
    assert outcome.metrics["vqa.overall"] == pytest.approx(
        sum(outcome.metrics[f"vqa.{t}"] * n for t, n in scores.support.items()) / sum(scores.support.values()))
    assert outcome.metrics["vqa.random.presence"] == pytest.approx(0.5)
    assert list(outcome.scores) == ["linear_head", "majority", "random"]


def test_report_has_one_row_per_question_type_with_model_and_baselines(outcome):
    report = outcome.report_md.read_text(encoding="utf-8")
    print("\n" + report)
    assert "| type | questions | model (linear_head) | majority | random |" in report
    scores = outcome.scores
    for kind, count in scores["linear_head"].support.items():
        cells = [f"{100 * scores[name].per_type[kind]:.1f}" for name in ("linear_head", "majority", "random")]
        assert f"| {kind} | {count} | {' | '.join(cells)} |" in report
    assert f"| **overall** | {sum(scores['linear_head'].support.values())} |" in report
    assert outcome.clip_weights_sha256 in report


def test_llava_files_read_back_as_the_generated_questions(outcome, sar_dir):
    assert read_llava(outcome.out_dir / LLAVA_TRAIN) == vqa_from_dataset(sar_dir, "train")
    test = read_llava(outcome.out_dir / LLAVA_TEST)
    assert test == vqa_from_dataset(sar_dir, "test")
    assert len(test) == 23 and all((sar_dir / record["image"]).is_file() for record in test)
    assert test[0]["conversations"][0]["value"].startswith("<image>\n")


def test_saved_linear_head_loads_back_and_gives_the_same_answers(outcome, sar_dir, clip_dir):
    saved = read_vqa_config(outcome.model_dir)
    assert saved.kind == "linear_head"
    assert saved.clip.weights_sha256 == sha256_file(clip_dir / WEIGHTS_NAME) == outcome.clip_weights_sha256
    loaded = load_vqa_model(outcome.model_dir, clip_dir)
    assert isinstance(loaded, ClipLinearHead)
    test = read_llava(outcome.llava_test)
    assert evaluate_vqa(loaded, test, sar_dir).predictions == outcome.scores["linear_head"].predictions
    predictions = json.loads((outcome.out_dir / "predictions.json").read_text(encoding="utf-8"))
    assert [p["answer"] for p in predictions] == [p[3] for p in outcome.scores["linear_head"].predictions]


def test_answer_ranker_is_saved_as_its_vocabulary_and_loads_back(workdir, sar_dir, clip_dir):
    ranked = run_vqa(config(workdir, {"model": "answer_ranker"}), clip_dir, sar_dir, workdir / "ranker", device="cpu")
    assert sorted(p.name for p in ranked.model_dir.iterdir()) == [VQA_CONFIG_NAME]
    loaded = load_vqa_model(ranked.model_dir, clip_dir)
    assert isinstance(loaded, ClipAnswerRanker)
    assert evaluate_vqa(loaded, read_llava(ranked.llava_test), sar_dir).predictions == \
        ranked.scores["answer_ranker"].predictions


def test_a_saved_model_refuses_another_clip_and_tampered_files(outcome, workdir, clip_dir):
    torch.manual_seed(1)
    other = save_model(build_model("rsvl-tiny")[0], workdir / "other-clip")
    with pytest.raises(ModelError, match="sha256"):
        load_vqa_model(outcome.model_dir, other)
    tampered = workdir / "tampered"
    shutil.copytree(outcome.model_dir, tampered)
    tensors = load_file(str(tampered / VQA_WEIGHTS_NAME))
    tensors["heads.0.weight"] = tensors["heads.0.weight"][:, :3].contiguous()
    save_file(tensors, str(tampered / VQA_WEIGHTS_NAME))
    with pytest.raises(ModelError, match=r"'heads.0.weight' is torch.float32 \(2, 3\), expected float \(2, 64\)"):
        load_vqa_model(tampered, clip_dir)
    saved = json.loads((outcome.model_dir / VQA_CONFIG_NAME).read_text(encoding="utf-8"))
    del saved["heads"]["Is there any land in the image?"]
    (tampered / VQA_CONFIG_NAME).write_text(json.dumps(saved), encoding="utf-8")
    with pytest.raises(ModelError, match="a head is stored exactly for questions with more than one"):
        load_vqa_model(tampered, clip_dir)
    saved = json.loads((outcome.model_dir / VQA_CONFIG_NAME).read_text(encoding="utf-8"))
    saved["heads"]["What colour is the sea?"] = "heads.99"
    (tampered / VQA_CONFIG_NAME).write_text(json.dumps(saved), encoding="utf-8")
    with pytest.raises(ModelError, match=r"'heads' names questions \['What colour is the sea\?'\] that are not in"):
        read_vqa_config(tampered)
    saved = json.loads((outcome.model_dir / VQA_CONFIG_NAME).read_text(encoding="utf-8"))
    saved["question_types"] = {question: "presence" for question in saved["vocabulary"]}
    (tampered / VQA_CONFIG_NAME).write_text(json.dumps(saved), encoding="utf-8")
    with pytest.raises(ModelError, match="question_types"):
        read_vqa_config(tampered)
    (tampered / VQA_CONFIG_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="not a valid VQA model description"):
        read_vqa_config(tampered)


def test_a_heads_file_with_extra_tensors_is_refused(outcome, workdir, clip_dir):
    padded = workdir / "padded"
    shutil.copytree(outcome.model_dir, padded)
    tensors = load_file(str(padded / VQA_WEIGHTS_NAME))
    tensors["heads.99.weight"] = torch.zeros(2, 64)
    save_file(tensors, str(padded / VQA_WEIGHTS_NAME))
    with pytest.raises(ModelError, match=r"tensors \['heads.99.weight'\] belong to no head"):
        load_vqa_model(padded, clip_dir)


def test_an_answer_ranker_saved_over_a_linear_head_leaves_no_heads_file(outcome, workdir, sar_dir, clip_dir):
    folder = workdir / "reused"
    shutil.copytree(outcome.model_dir, folder)
    model, _, preprocess, tokenizer = load_model(clip_dir)
    ranker = ClipAnswerRanker(model, preprocess, tokenizer, answer_vocabulary(read_llava(outcome.llava_train)))
    save_vqa_model(ranker, folder, clip_dir)
    assert sorted(path.name for path in folder.iterdir()) == [VQA_CONFIG_NAME]
    assert isinstance(load_vqa_model(folder, clip_dir), ClipAnswerRanker)


def test_mlflow_training_run_holds_the_vqa_metrics_and_files(outcome, workdir, training_run):
    client = MlflowClient(config(workdir).mlflow.tracking_uri)
    run = client.get_run(training_run)
    assert {k: run.data.metrics[k] for k in outcome.metrics} == pytest.approx(outcome.metrics)
    assert run.data.tags[MODEL_TAG] == "linear_head"
    logged = {a.path for a in client.list_artifacts(training_run, "vqa")}
    assert {"vqa/report.md", "vqa/llava_train.json", "vqa/llava_test.json", "vqa/model"} <= logged
    assert {a.path for a in client.list_artifacts(training_run, "vqa/model")} == \
        {"vqa/model/vqa_model.json", "vqa/model/vqa_heads.safetensors"}


def test_component_writes_the_vqa_model_metrics_file_and_summary(workdir, sar_dir, clip_dir):
    from components.vqa.component import vqa

    out = workdir / "component"
    out.mkdir()
    vqa_model, metrics, summary = (dsl.Model(uri=str(out / "vqa_model")), dsl.Metrics(uri=str(out / "metrics")),
                                   dsl.Markdown(uri=str(out / "summary.md")))
    vqa.python_func(config_json=config(workdir, {"model": "linear_head"}).model_dump_json(),
                    model=dsl.Model(uri=str(clip_dir.parent)), dataset=dsl.Dataset(uri=str(sar_dir)),
                    mlflow_run_id="", vqa_model=vqa_model, metrics=metrics, summary=summary)
    assert json.loads((out / "metrics").read_text(encoding="utf-8")) == metrics.metadata
    assert 0.0 <= metrics.metadata["vqa.overall"] <= 1.0
    assert (out / "summary.md").read_text(encoding="utf-8").startswith("# SAR VQA: linear_head")
    assert read_vqa_config(out / "vqa_model" / "model").clip.weights_sha256 == vqa_model.metadata["clip_weights_sha256"]
    assert vqa_model.metadata["kind"] == "linear_head"
    assert (out / "vqa_model" / LLAVA_TRAIN).is_file()


def test_a_dataset_without_boxes_or_mask_yields_no_questions(workdir, clip_dir):
    write_optical_scenes(workdir / "optical", seed=0, per_class=3)
    with pytest.raises(DataError, match=r"optical: split 'train' yields no VQA questions"):
        run_vqa(config(workdir, {"model": "linear_head"}), clip_dir, workdir / "optical", workdir / "no-boxes")
    assert not (workdir / "no-boxes" / LLAVA_TRAIN).exists()


def test_a_config_without_a_vqa_section_is_refused(workdir, sar_dir, clip_dir):
    with pytest.raises(ConfigError, match="has no vqa section"):
        run_vqa(config(workdir), clip_dir, sar_dir, workdir / "no-config")


# --- every model on every set --------------------------------------------------------------------

def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def _hrsid_like(root: Path) -> Path:
    """An HRSID-layout source of two 400 px chips (4 tiles each), one hashing to train, one to test; ships only."""
    names = [f"chip{i}.png" for i in range(50)]
    chips = {split: next(name for name in names if hash_split(name) == split) for split in ("train", "test")}
    rng = np.random.default_rng(0)
    listing = {}
    for chip in chips.values():
        pixels = rng.integers(0, 60, (400, 400))
        boxes = []
        for _ in range(int(rng.integers(3, 7))):
            x, y = (int(v) for v in rng.integers(10, 380, 2))
            pixels[y:y + 10, x:x + 10] = 240
            boxes.append({"x_min": x, "y_min": y, "x_max": x + 9, "y_max": y + 9, "area_px": 100, "label": "ship"})
        _png(root / "images" / chip, np.stack([pixels] * 3, axis=-1))
        listing[chip] = boxes
    (root / "ship_boxes.json").write_text(json.dumps(listing), encoding="utf-8")
    return root


def compared_config(workdir: Path, sets: list[dict], vqa_sets: list[str]) -> RunConfig:
    return RunConfig.model_validate({
        "paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
        "vqa": {"model": "linear_head", "sets": vqa_sets},
        "train": {"ablations": [{"name": "sar_only", "stages": ["sar"]}],
                  "stages": [{"name": "optical"}, {"name": "sar"}]},
        "evaluate": {"compare_base": True, "cache_dir": str(workdir / "eval_cache"), "sets": sets},
        "mlflow": {"tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}", "experiment": EXPERIMENT},
    })


@pytest.fixture(scope="module")
def compared(workdir, sar_dir, clip_dir):
    """The step with the sar_only ablation, the untuned base, a present and an absent HRSID-like eval set."""
    torch.manual_seed(7)
    # a train step's folder with the ablation (the candidate stays at the module's train/model)
    ablation = save_model(build_model("rsvl-tiny")[0], workdir / "ablated" / "ablations" / "sar_only" / "model")
    sets = [{"name": "hrsid", "source": {"format": "hrsid-tiles", "path": str(_hrsid_like(workdir / "hrsid_src"))},
             "split": "test", "tasks": ["retrieval"], "narrate": True, "optional": True},
            {"name": "gone", "source": {"format": "hrsid-tiles", "path": str(workdir / "absent")},
             "split": "test", "tasks": ["retrieval"], "optional": True}]
    cfg = compared_config(workdir, sets, ["hrsid", "gone"])
    outcome = run_vqa(cfg, clip_dir, sar_dir, workdir / "compared", device="cpu",
                      compare=comparison_models(cfg, workdir / "ablated"), compare_base=True)
    return cfg, ablation, outcome


def test_the_table_has_one_row_per_model_and_set_each_as_fitted_alone(compared, workdir, sar_dir, clip_dir):
    cfg, ablation, outcome = compared
    assert list(outcome.table) == ["run", "hrsid"]
    rows = ["candidate", "sar_only", "base", "majority", "random"]
    assert all(list(outcome.table[name]) == rows for name in outcome.table)
    hrsid = workdir / "eval_cache" / "hrsid"
    built = {"candidate": load_model(clip_dir), "sar_only": load_model(ablation), "base": base_model(cfg, clip_dir)}
    for set_name, dataset, test_split in (("run", sar_dir, "test"), ("hrsid", hrsid, "test")):
        train, test = vqa_from_dataset(dataset, "train"), vqa_from_dataset(dataset, test_split)
        for name, (model, _, preprocess, _) in built.items():
            alone = ClipLinearHead.fit(model, preprocess, train, RecordImages(train, dataset))
            assert outcome.table[set_name][name].predictions == evaluate_vqa(alone, test, dataset).predictions, name
        majority = evaluate_vqa(MajorityAnswer(train), test, dataset)
        assert outcome.table[set_name]["majority"].per_type == majority.per_type
    # HRSID tiles have ship boxes and no sea/land mask: only the box questions
    assert set(outcome.table["hrsid"]["candidate"].per_type) == {"presence", "count", "position"}
    assert outcome.table["hrsid"]["random"].per_type["presence"] == pytest.approx(0.5)


def test_every_model_and_set_has_its_metrics_and_an_absent_set_its_reason(compared):
    _, _, outcome = compared
    for set_name, rows in outcome.table.items():
        for row, scores in rows.items():
            assert outcome.metrics[f"vqa.{set_name}.{row}.overall"] == scores.overall
            assert {f"vqa.{set_name}.{row}.{kind}" for kind in scores.per_type} <= set(outcome.metrics)
    assert not any(key.startswith("vqa.gone.") for key in outcome.metrics)
    assert outcome.metrics["vqa.overall"] == outcome.metrics["vqa.run.candidate.overall"]
    assert set(outcome.skipped) == {"gone"} and "is absent" in outcome.skipped["gone"]


def test_the_report_shows_the_models_by_sets_table(compared):
    _, _, outcome = compared
    report = outcome.report_md.read_text(encoding="utf-8")
    print("\n" + report)
    assert "| set | model | presence | count | position | land | land_sea | overall |" in report
    candidate = outcome.table["hrsid"]["candidate"]
    cells = [f"{100 * candidate.per_type[k]:.1f}" for k in ("presence", "count", "position")]
    assert (f"| hrsid | candidate (progressive: optical → sar) | {' | '.join(cells)} | - | - | "
            f"{100 * candidate.overall:.1f} |") in report
    assert "| run | sar_only (sar) |" in report and "| run | base (untuned start model) |" in report
    assert f"| hrsid | *questions* | {' | '.join(str(candidate.support[k]) for k in ('presence', 'count', 'position'))}" \
        in report
    assert "- set `gone` skipped: source " in report


def test_a_vqa_set_must_name_an_eval_set_scored_on_a_held_out_split(workdir):
    sar_test = {"name": "sar_test", "dataset": "default/sar", "split": "test", "tasks": ["retrieval"]}
    with pytest.raises(ValidationError, match=r"vqa.sets 'hrsid' is no evaluate.sets entry \(known: \['sar_test'\]\)"):
        compared_config(workdir, [sar_test], ["hrsid"])
    with pytest.raises(ValidationError, match="overlaps vqa.train_split 'train'"):
        compared_config(workdir, [{**sar_test, "split": "train"}], ["sar_test"])
    with pytest.raises(ValidationError, match="not 'run', the run dataset's own name"):
        compared_config(workdir, [sar_test], ["run"])
