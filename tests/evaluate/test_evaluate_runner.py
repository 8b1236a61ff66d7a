"""evaluate_model end to end: metric keys, numbers, pictures, reports, failures named early."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rsvl.data.dataset import ManifestDataset
from rsvl.data.generate import write_optical_scenes, write_s1s2_patches, write_sar_chips
from rsvl.errors import ConfigError, DataError, ModelError
from rsvl.config.evaluate import EvalSet, load_eval_sets
from rsvl.evaluate.runner import evaluate_model
from rsvl.evaluate.retrieval import embed_pairs, recall_metrics
from rsvl.models import build_model, save_model

PNG = b"\x89PNG\r\n\x1a\n"
PROTOCOL_KEYS = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mR"]
RETRIEVAL_KEYS = PROTOCOL_KEYS + [f"std_{key}" for key in PROTOCOL_KEYS]
"""Identical captions merged, then the standard protocol (each caption its own answer)."""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval_data")
    write_optical_scenes(root / "optical", per_class=6)
    write_s1s2_patches(root / "s1s2", count=40)
    return root


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("rsvl-tiny")


@pytest.fixture(scope="module")
def evaluated(tiny, data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_out")
    sets = [{"name": "opt", "dataset": "optical", "split": None, "tasks": ["retrieval", "zero_shot", "ndcg"],
             "ndcg_k": 20, "dvc_version": "v1.2"}]
    return evaluate_model(tiny, sets, out, data_root=data_root)


def test_metric_keys_are_prefixed_and_complete(evaluated, data_root):
    classes = sorted(ManifestDataset(data_root / "optical", load_media=False).frame["label"].unique())
    slugs = [c.replace(" ", "_") for c in classes]
    expected = {f"opt.{k}" for k in RETRIEVAL_KEYS} | {"opt.zs_top1", "opt.zs_mean_class", "opt.ndcg_at_20"}
    expected |= {f"opt.zs_class.{slug}" for slug in slugs}
    expected |= {f"opt.ndcg_class.{slug}" for slug in slugs}  # single-label: one query per class
    assert set(evaluated.metrics) == expected
    per_query = json.loads(evaluated.details.read_text(encoding="utf-8"))["eval_sets"]["opt"]["ndcg"]["per_query"]
    assert {f"opt.ndcg_class.{c.replace(' ', '_')}": per_query[c.lower()] for c in classes} == pytest.approx(
        {key: value for key, value in evaluated.metrics.items() if ".ndcg_class." in key})
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+", key) for key in evaluated.metrics)
    assert evaluated.unavailable == {}
    assert 0.0 <= evaluated.metrics["opt.zs_top1"] <= 100.0
    assert 0.0 <= evaluated.metrics["opt.ndcg_at_20"] <= 1.0


def test_retrieval_numbers_equal_recall_metrics_on_the_same_embeddings(evaluated, data_root):
    torch.manual_seed(0)
    model, _, preprocess, tokenizer = build_model("rsvl-tiny")  # the same weights as the `tiny` fixture
    model.eval()
    images, texts, owner, captions = embed_pairs(model, preprocess, tokenizer, ManifestDataset(data_root / "optical"))
    merged = recall_metrics(images, texts, owner, text_keys=captions)
    standard = recall_metrics(images, texts, owner)
    direct = {**{f"opt.{k}": v for k, v in merged.items()}, **{f"opt.std_{k}": v for k, v in standard.items()}}
    assert direct == pytest.approx({k: evaluated.metrics[k] for k in (f"opt.{key}" for key in RETRIEVAL_KEYS)})


@pytest.mark.parametrize("training", [True, False])
def test_model_mode_is_restored(tiny, data_root, tmp_path, training):
    tiny[0].train(training)
    evaluate_model(tiny, [{"name": "o", "dataset": "optical", "tasks": ["retrieval"], "limit": 4}], tmp_path,
                   data_root=data_root)
    assert tiny[0].training is training
    tiny[0].train()


def test_pictures_and_reports(evaluated):
    assert set(evaluated.pictures) == {"opt.recall_curve", "opt.top5_retrievals", "opt.confusion"}
    for path in evaluated.pictures.values():
        assert path.read_bytes().startswith(PNG)
    page = evaluated.report_html.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(evaluated.pictures)
    assert "src=\"opt/" not in page and "opt.mR" in page and "v1.2" in page
    markdown = evaluated.report_md.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == len(evaluated.pictures)
    assert all((evaluated.report_md.parent / link).is_file() for link in links)


def test_details_json(evaluated):
    details = json.loads(evaluated.details.read_text(encoding="utf-8"))
    assert details["metrics"] == pytest.approx(evaluated.metrics)
    opt = details["eval_sets"]["opt"]
    assert opt["rows"] == 48 and opt["dvc_version"] == "v1.2"
    assert opt["recall_curve"]["k"][0] == 1 and len(opt["recall_curve"]["i2t"]) == len(opt["recall_curve"]["k"])
    confusion = opt["zero_shot"]["confusion"]
    assert sum(map(sum, confusion)) == 48
    assert opt["ndcg"]["multi_label"] is False


def test_captioning_on_a_clip_model_is_refused_before_any_work(tiny, data_root, tmp_path):
    sets = [{"name": "opt", "dataset": "optical", "tasks": ["retrieval", "captioning"]}]
    with pytest.raises(ModelError, match="'opt' asks for captioning"):
        evaluate_model(tiny, sets, tmp_path / "out", data_root=data_root)
    assert not (tmp_path / "out").exists()


def test_missing_dataset_and_duplicate_names_are_named(tiny, data_root, tmp_path):
    with pytest.raises(DataError, match="'lost'.*does not exist"):
        evaluate_model(tiny, [{"name": "lost", "dataset": "nowhere", "tasks": ["retrieval"]}], tmp_path,
                       data_root=data_root)
    twice = {"name": "a", "dataset": "optical", "tasks": ["retrieval"]}
    with pytest.raises(DataError, match="distinct"):
        evaluate_model(tiny, [twice, twice], tmp_path, data_root=data_root)


def test_multilabel_ndcg_on_sentinel2(data_root, tmp_path):
    stats = ManifestDataset(data_root / "s1s2", load_media=False).band_stats["s2"]
    model = build_model("rsvl-tiny", in_bands=len(stats["bands"]), band_stats=stats)
    sets = [EvalSet(name="s2", dataset=str(data_root / "s1s2"), split=None, tasks=["ndcg"], media="s2", ndcg_k=10)]
    result = evaluate_model(model, sets, tmp_path, data_root="/nonexistent")
    per_query = json.loads(result.details.read_text())["eval_sets"]["s2"]["ndcg"]["per_query"]
    label_sets = {". ".join(sorted({label.lower() for label in labels}))
                  for labels in ManifestDataset(data_root / "s1s2", load_media=False).frame["labels"]}
    assert set(per_query) == label_sets
    labels = {label for text in label_sets for label in text.split(". ")}
    per_class = {f"s2.ndcg_class.{re.sub('[^a-z0-9]+', '_', label)}":
                 np.mean([value for text, value in per_query.items() if label in text.split(". ")]) for label in labels}
    assert set(result.metrics) == {"s2.ndcg_at_10"} | set(per_class)
    assert {key: result.metrics[key] for key in per_class} == pytest.approx(per_class)
    assert result.metrics["s2.ndcg_at_10"] == pytest.approx(np.mean(list(per_query.values())))


@pytest.fixture(scope="module")
def tiny_coca_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model("rsvl-tiny-coca")[0]
    return save_model(model, tmp_path_factory.mktemp("coca") / "model")


def test_coca_captioning_from_a_saved_model(tiny_coca_dir, data_root, tmp_path):
    sets = [{"name": "cap", "dataset": "optical", "split": None, "tasks": ["captioning"], "limit": 3}]
    result = evaluate_model(tiny_coca_dir, sets, tmp_path, data_root=data_root, java_metrics=False)
    for key in ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "ROUGE_L", "CIDEr"):
        assert 0.0 <= result.metrics[f"cap.{key}"] <= (10.0 if key == "CIDEr" else 1.0)
    assert set(result.unavailable) == {"cap.METEOR", "cap.SPICE"}  # the JVM tools were switched off
    assert all("disabled" in reason for reason in result.unavailable.values())
    generated = json.loads(result.details.read_text())["eval_sets"]["cap"]["captions"]["generated"]
    assert len(generated) == 3
    page = result.report_html.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3  # one thumbnail per captioned image
    assert "unavailable: Java tools disabled" in page
    assert all(html.escape(caption) in page for caption in generated.values())


def test_single_band_sar_chips_reach_a_three_band_coca_for_retrieval_and_captioning(tiny_coca_dir, tmp_path):
    write_sar_chips(tmp_path / "sar", count=12)
    chips = ManifestDataset(tmp_path / "sar", split=None)
    assert chips[0]["image"].shape[0] == 1
    sets = [{"name": "sar", "dataset": "sar", "split": None, "tasks": ["retrieval", "captioning"], "limit": 3}]
    result = evaluate_model(tiny_coca_dir, sets, tmp_path / "out", data_root=tmp_path, java_metrics=False)
    assert {"sar.mR", "sar.CIDEr", "sar.BLEU_4"} <= set(result.metrics)
    assert len(json.loads(result.details.read_text())["eval_sets"]["sar"]["captions"]["generated"]) == 3


def test_compared_metrics_sit_beside_the_candidates_at_the_top_of_the_report(tiny, data_root, tmp_path):
    sets = [{"name": "o", "dataset": "optical", "tasks": ["retrieval"], "limit": 8}]
    result = evaluate_model(tiny, sets, tmp_path, data_root=data_root,
                            compared={"other": {"o.mR": 1.0, "o.extra": 2.0}})
    markdown = result.report_md.read_text(encoding="utf-8")
    mr = result.metrics["o.mR"]
    table = markdown.index("| metric | candidate | other | candidate − other |")
    assert table < markdown.index("## o:")
    assert f"| o.mR | {mr:.4g} | 1 | {mr - 1:+.4g} |" in markdown
    assert f"| o.i2t_r1 | {result.metrics['o.i2t_r1']:.4g} | — | — |" in markdown
    assert "| o.extra | — | 2 | — |" in markdown
    assert json.loads(result.details.read_text())["compared"] == {"other": {"o.mR": 1.0, "o.extra": 2.0}}
    assert "<th>candidate − other</th>" in result.report_html.read_text(encoding="utf-8")


def test_eval_set_rules(tmp_path):
    with pytest.raises(ValueError, match="pattern"):
        EvalSet(name="a.b", dataset="x", tasks=["retrieval"])
    with pytest.raises(ValueError, match="repeat"):
        EvalSet(name="a", dataset="x", tasks=["ndcg", "ndcg"])
    path = tmp_path / "sets.yaml"
    path.write_text("eval_sets:\n  - {name: rsscn7, dataset: rsscn7, tasks: [zero_shot, ndcg], ndcg_k: 100}\n")
    assert load_eval_sets(path)[0].ndcg_k == 100
    path.write_text("- {name: x, dataset: d, tasks: [segmentation]}\n")
    with pytest.raises(ConfigError, match=r"eval set #0: tasks\.0"):
        load_eval_sets(path)


@pytest.mark.slow  # a subprocess or real-data end-to-end path: in `make test`, not `make test-fast`
@pytest.mark.real_data
def test_zero_shot_on_real_rsscn7(shared_data, tmp_path):
    from rsvl.data.adapters import ingest

    source = shared_data / "rsscn7"
    if not source.is_dir():
        pytest.skip(f"{source} not found")
    rows = (source / "labels.csv").read_text(encoding="utf-8").splitlines()
    per_class: dict[str, list[str]] = {}
    for row in rows[1:]:
        if row.endswith(",test"):
            per_class.setdefault(row.split(",")[1], []).append(row)
    subset = tmp_path / "rsscn7_subset"
    subset.mkdir()
    (subset / "images").symlink_to(source / "images")
    (subset / "labels.csv").write_text("\n".join([rows[0]] + [r for c in per_class.values() for r in c[:4]]) + "\n")
    ingest("class-folder", subset, tmp_path / "data" / "rsscn7")
    model = build_model("rsvl-effnetlite0-minilm", "packaged", image_size=128)
    sets = [{"name": "rsscn7", "dataset": "rsscn7", "tasks": ["zero_shot", "ndcg"], "ndcg_k": 10}]
    result = evaluate_model(model, sets, tmp_path / "out", data_root=tmp_path / "data")
    assert 0.0 <= result.metrics["rsscn7.zs_top1"] <= 100.0
    per_class_keys = {k for k in result.metrics if k.startswith("rsscn7.zs_class.")}
    assert per_class_keys == {f"rsscn7.zs_class.{c}" for c in per_class}
    assert len(per_class_keys) == 7
    assert 0.0 <= result.metrics["rsscn7.ndcg_at_10"] <= 1.0
    assert result.pictures["rsscn7.confusion"].read_bytes().startswith(PNG)
