"""``vqa``: closed-set SAR VQA on the trained CLIP and its comparisons, accuracy per question type and set.

The ``vqa`` config section picks the model, the splits and the extra sets (YAML):

    vqa: {model: linear_head, train_split: train, test_split: test, sets: [hrsid]}
    # model: linear_head | spatial_head | answer_ranker; sets: evaluate.sets names

Questions (presence, count, position of the largest object, any land, mostly land or sea) come
from the boxes and the sea/land mask (``rsvl.vqa.vqa_from_dataset``); ``train_split`` gives the
closed answer sets, the heads' training data and the majority answers, ``test_split`` is scored.
``linear_head`` fits one logistic regression per question string on the frozen CLIP image
embedding; ``spatial_head`` the same on the embedding plus the image tower's feature grid before
pooling (``rsvl.vqa.spatial``); ``answer_ranker`` ranks each candidate answer, written as a
statement, with the CLIP (no fitting).

Sets: the run dataset (``run``) and each eval set ``vqa.sets`` names, resolved as the evaluate step
resolves it (SAR-TEXT's ``hrsid``: real HRSID tiles ingested from ``../shared/data`` into the
evaluation cache, ship boxes only, so presence/count/position; skipped with the reason, tagged
``vqa_skipped.<set>``, when the optional source is absent). Models: the run's CLIP
(``candidate``) and the evaluate step's comparisons, found the same way (``ablations/<name>/model``
of the train step's folder via ``rsvl.steps.evaluation.comparison_models``, e.g. ``sar_only``; the
untuned ``base`` with ``evaluate.compare_base``).

``vqa_model`` is a folder: ``model/vqa_model.json`` (kind, closed vocabulary, normalisation, the
CLIP's weights sha256), ``model/vqa_heads.safetensors`` (the heads' tensors; none for the answer
ranker), both for the candidate on the run set; ``llava_train.json`` and ``llava_test.json`` (the
run set's questions in LLaVA conversation format, images relative to the dataset), ``report.md``
(the candidate beside the baselines, then one table of every model × set), ``predictions.json``,
``metrics.json``.

``rsvl.vqa.load_vqa_model(<vqa_model>/model, <train>/model)`` rebuilds it on its CLIP (refused for
a CLIP whose weights hash differs). Metrics (accuracy in [0, 1]), logged into the training run
with the files under the ``vqa/`` artifact folder: ``vqa.<set>.<model>.<type>`` for every set,
model (``candidate``, ``sar_only``, ``base``) and baseline (``majority``, ``random``), types
``presence``, ``count``, ``position``, ``land``, ``land_sea`` and ``overall``; and the candidate on
the run set as ``vqa.overall``, ``vqa.<type>``, ``vqa.majority.*``, ``vqa.random.*``; the run gets
the tag ``vqa.model``.

A generative SAR-GPT-style model on a cluster: no multimodal LLM weights exist offline, so this
step's models are closed-set. On a cluster, fine-tune the generative model (LLaVA / TinyGPT-V
recipe) on ``llava_train.json`` with the dataset folder as ``--image_folder``, wrap it in a class
with ``answer(images, questions) -> list[str]`` (``rsvl.vqa.VqaModel``; e.g. a client of an
OpenAI-compatible multimodal endpoint served in the cluster), then add its name to the ``vqa``
config section's ``model`` choices and a builder to ``rsvl.steps.vqa.BUILDERS``. The step scores
it with the same per-type table and baselines and calls its ``save(folder)`` method, if any, for
``model/``.

Library: ``rsvl.steps.vqa.run_vqa``
Tests: ``components/vqa/tests/test_component.py`` (the body on the trained CLIP, logging into its run),
    ``tests/steps/test_vqa_step.py`` (the library call, the component's body, comparisons, eval sets, the saved model, MLflow)
"""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def vqa(config_json: str, model: dsl.Input[dsl.Model], dataset: dsl.Input[dsl.Dataset], mlflow_run_id: str,
        vqa_model: dsl.Output[dsl.Model], metrics: dsl.Output[dsl.Metrics], summary: dsl.Output[dsl.Markdown]):
    """Generate questions from the datasets' boxes and masks, fit the configured VQA model on each CLIP, score it.

    Args:
        config_json: The resolved run config (JSON) with a ``vqa`` section.
        model: The train step's folder (the CLIP at ``model/``, ablations at ``ablations/<name>/model``).
        dataset: The run dataset (boxes, sea/land mask).
        mlflow_run_id: The CLIP's training run to log into (empty: log nowhere).
        vqa_model: The step's folder: the VQA model at ``model/``, LLaVA files, report, predictions.
        metrics: ``vqa.*`` accuracies.
        summary: The Markdown report (per question type: model, majority, random; every model × set).
    """
    import json
    import os
    import shutil

    from rsvl.config import RunConfig
    from rsvl.steps.evaluation import comparison_models
    from rsvl.steps.vqa import run_vqa

    cfg = RunConfig.model_validate_json(config_json)
    outcome = run_vqa(cfg, os.path.join(model.path, "model"), dataset.path, vqa_model.path,
                      mlflow_run_id=mlflow_run_id or None, compare=comparison_models(cfg, model.path),
                      compare_base=cfg.evaluate.compare_base)
    for key, value in outcome.metrics.items():
        metrics.log_metric(key, value)
    with open(metrics.path, "w", encoding="utf-8") as handle:  # a file on disk lets the local cache reuse it
        json.dump(outcome.metrics, handle, indent=2)
    shutil.copyfile(outcome.report_md, summary.path)
    vqa_model.metadata.update({"kind": outcome.kind, "clip_weights_sha256": outcome.clip_weights_sha256})
