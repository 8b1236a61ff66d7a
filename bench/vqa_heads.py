"""VQA heads compared: ``linear_head`` against ``spatial_head`` on every CLIP of a sar_text run and every set.

Reads a finished local pipeline run (its train step's folder: the candidate at ``model/``, the
ablations at ``ablations/<name>/model``; its filtered run dataset) and, for each head:

1. runs the ``vqa`` step (:func:`rsvl.steps.vqa.run_vqa`) with the run's sar_text config, the
   ``hrsid`` eval set added to ``vqa.sets`` (skipped with the reason where ``../shared/data`` is
   absent) and the untuned ``base``: the models × sets table the pipeline reports;
2. with ``--folds K`` (default 5), K-fold cross-validation over every image of the run dataset
   (all splits pooled, folds by image), each CLIP encoded once: the test split has only 23
   images, so one count question more or less moves its accuracy by 4 points; pooled folds score
   every image once.

Run from the repository root, after ``make pipeline`` (see ``bench/README.md``)::

    PYTHONPATH=src:. HF_HUB_OFFLINE=1 .venv/bin/python bench/vqa_heads.py \\
        --run build/kfp_local/<run folder>
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from pipelines.dag import paper_config
from rsvl.models import load_model
from rsvl.steps.evaluation import base_model, comparison_models
from rsvl.steps.vqa import CANDIDATE, format_table, run_vqa
from rsvl.vqa import vqa_from_dataset
from rsvl.vqa.llava import qa_pairs
from rsvl.vqa.models import ClipImageEncoder, MajorityAnswer, fit_heads, standardise
from rsvl.vqa.questions import QUESTION_TYPES, question_type
from rsvl.vqa.scoring import RecordImages
from rsvl.vqa.spatial import CellProjection, GridEncoder

HEADS = ("linear_head", "spatial_head")


def cross_validate(clip, records: list[dict], dataset: Path, folds: int) -> dict[str, dict[str, float]]:
    """Per-type accuracy of each head (and the majority answer) over K folds of ``records``' images."""
    model, _, preprocess, _ = clip
    embeddings, grids = GridEncoder(model, preprocess).embed_grid_sequence(RecordImages(records, dataset))
    order = np.random.RandomState(0).permutation(len(records))
    hits: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for held in np.array_split(order, folds):
        test = sorted(int(i) for i in held)
        train = sorted(set(range(len(records))) - set(test))
        fitted = [records[i] for i in train]
        projection = CellProjection.fit(grids[train])
        features = {"linear_head": embeddings, "spatial_head": projection.features(embeddings, grids)}
        majority = MajorityAnswer(fitted)
        for head, values in features.items():
            mean, std, standard = standardise(values[train])
            heads = fit_heads(fitted, standard)
            scored = (values[test] - mean) / std
            for row, index in enumerate(test):
                for question, truth in qa_pairs(records[index]):
                    kind = question_type(question)
                    classes, linear = heads.get(question, ([None], None))
                    answer = classes[0] if linear is None else classes[int(linear(scored[row][None]).argmax())]
                    hits[head][kind].append(answer == truth)
                    if head == "linear_head":
                        hits["majority"][kind].append(majority.answers.get(question) == truth)
    return {row: {kind: float(np.mean(values)) for kind, values in kinds.items()} for row, kinds in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a local pipeline run folder (build/kfp_local/<run>)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds over the run dataset (0: none)")
    parser.add_argument("--cache-dir", default="build/eval_data", help="evaluation cache (HRSID is ingested there)")
    parser.add_argument("--out", type=Path, default=Path("build/bench_vqa_heads"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    train_dir, dataset = args.run / "train" / "model", args.run / "filter-rows" / "filtered"
    for head in HEADS:
        cfg = paper_config("sar_text", "local", [f"vqa.model={head}", "vqa.sets=[hrsid]",
                                                 f"evaluate.cache_dir={args.cache_dir}"])
        start = time.time()
        outcome = run_vqa(cfg, train_dir / "model", dataset, args.out / head, device="cpu",
                          compare=comparison_models(cfg, train_dir), compare_base=True)
        print(f"\n## {head}: the vqa step, every model × set ({time.time() - start:.0f} s)\n")
        print("\n".join(format_table(outcome.table, skipped=outcome.skipped)))
    if args.folds:
        cfg = paper_config("sar_text", "local")
        records = vqa_from_dataset(dataset, None)
        clips = {CANDIDATE: train_dir / "model", **comparison_models(cfg, train_dir)}
        print(f"\n## {args.folds}-fold cross-validation over the run dataset's {len(records)} images (%)\n")
        kinds = [kind for kind in QUESTION_TYPES]
        print("| model | head | " + " | ".join(kinds) + " |\n|---|---|" + "---:|" * len(kinds))
        for name, clip in {**clips, "base": None}.items():
            built = base_model(cfg, train_dir / "model") if clip is None else load_model(clip)
            for row, values in cross_validate(built, records, dataset, args.folds).items():
                print(f"| {name} | {row} | " + " | ".join(f"{100 * values.get(k, float('nan')):.1f}" for k in kinds)
                      + " |", flush=True)


if __name__ == "__main__":
    main()
