"""The pieces of a fit without Ray: schedule, batches, objectives, trainable subsets, checkpoints, tracking."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from rsvl.cli import app
from rsvl.config import ObjectiveConfig, RunConfig, TrainableConfig
from rsvl.data.dataset import ManifestDataset
from rsvl.data.generate import write_optical_scenes, write_sar_chips
from rsvl.errors import ConfigError, DataError, ModelError
from rsvl.models import build_model, load_model, save_model
from rsvl.models.bands import first_conv
from rsvl.models.preprocess import RandomRotation
from rsvl.train import fit, new_run_name
from rsvl.train.checkpoint import TRAIN_STATE, read_checkpoint, write_checkpoint
from rsvl.train.data import CaptionPairs, EpochBatchSampler, TextImageCollate, fit_model_to_data, image_inputs
from rsvl.train.identity import identity_config
from rsvl.train.objectives import build_objective, objective_names
from rsvl.train.schedule import WarmupCosine, warmup_cosine
from rsvl.train.tracking import UNTRACKED, data_version_tag, flatten, git_commit, resolve_tracking_uri
from rsvl.train.trainable import apply_trainable, param_groups, register_adapter, set_train_mode

CAPTIONS = [
    "a dense forest", "a river bend", "a dense city", "a harbour", "farmland", "a beach", "an airport", "a lake",
]


@pytest.fixture(scope="module")
def optical(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("parts") / "optical"
    write_optical_scenes(out, seed=0, per_class=4)
    return out


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model, train, val, tokenizer = build_model("rsvl-tiny")
    return model, train, val, tokenizer


def trainable_names(model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def overfit(objective, model, batch, steps: int = 6) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(steps):
        out = objective(model, batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        objective.after_step(model)
        losses.append(float(out["loss"].detach()))
    return losses


def test_warmup_then_cosine_to_zero():
    schedule = WarmupCosine(total_steps=10, warmup_steps=3)
    values = [schedule(step) for step in range(10)]
    assert values[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert values[3] == 1.0 and all(a > b for a, b in zip(values[3:], values[4:]))
    assert 0 < values[-1] < 0.05 and WarmupCosine(5, 0)(0) == 1.0


def test_scheduler_state_loads_without_pickled_code(tmp_path):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = warmup_cosine(optimizer, 10, 2)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    torch.save(scheduler.state_dict(), tmp_path / "s.pt")
    restored = warmup_cosine(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), 10, 2)
    restored.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert restored.get_last_lr() == pytest.approx(scheduler.get_last_lr())


def test_batch_sampler_shards_global_batches_and_resumes_mid_epoch():
    ranks = [EpochBatchSampler(50, 4, rank=r, world_size=3, seed=7) for r in range(3)]
    assert len(ranks[0]) == 4
    batches = [list(sampler) for sampler in ranks]
    seen = [i for rank in batches for batch in rank for i in batch]
    assert len(seen) == len(set(seen)) == 48 and all(len(b) == 4 for rank in batches for b in rank)
    again = list(EpochBatchSampler(50, 4, rank=1, world_size=3, seed=7))
    assert again == batches[1]
    ranks[1].set_epoch(1)
    assert list(ranks[1]) != batches[1]
    ranks[1].set_epoch(0, start_batch=2)
    assert list(ranks[1]) == batches[1][2:]
    with pytest.raises(DataError, match="fewer than one global batch"):
        EpochBatchSampler(10, 4, world_size=3)


def test_caption_pairs_draw_per_epoch_and_leave_the_global_rng_alone(optical, tiny):
    _, preprocess_train, _, _ = tiny
    samples = ManifestDataset(optical, split="train")
    pairs = CaptionPairs(samples, preprocess_train, seed=3)
    torch.manual_seed(11)
    first = pairs[2]
    after = torch.rand(1)
    torch.manual_seed(11)
    assert torch.equal(pairs[2]["image"], first["image"]) and pairs[2]["caption"] == first["caption"]
    assert torch.equal(torch.rand(1), after)
    assert first["caption"] in samples[2]["captions"] and first["image"].shape == (3, 64, 64)
    drawn = set()
    for epoch in range(8):
        pairs.set_epoch(epoch)
        drawn.add(pairs[2]["caption"])
    assert len(drawn) > 1
    assert image_inputs(samples) == (3, None)


def test_caption_pairs_draw_what_torch_manual_seed_per_sample_drew(optical, tiny):
    """Seeding only the CPU generator per sample gives the images and captions that
    ``torch.manual_seed`` (every device) under the same forked CPU RNG gave, bit for bit."""
    _, preprocess_train, _, _ = tiny
    samples = ManifestDataset(optical, split="train")
    pairs = CaptionPairs(samples, RandomRotation(preprocess_train, 360.0), seed=5)
    for epoch, index in ((0, 0), (0, 7), (3, 2), (9, len(samples) - 1)):
        pairs.set_epoch(epoch)
        got = pairs[index]
        rng = np.random.default_rng([5, epoch, index])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**62)))
            image = RandomRotation(preprocess_train, 360.0)(samples[index]["image"])
        captions = samples[index]["captions"]
        assert torch.equal(got["image"], image)
        assert got["caption"] == str(captions[rng.integers(len(captions))])


def test_collate_builds_the_requested_fields(optical, tiny):
    _, preprocess_train, _, tokenizer = tiny
    pairs = CaptionPairs(ManifestDataset(optical, split="train"), preprocess_train)
    items = [pairs[i] for i in range(3)]
    batch = TextImageCollate(tokenizer, ("image", "text", "long_text"))(items)
    assert batch["image"].shape == (3, 3, 64, 64) and batch["text"].shape == (3, 32)
    assert batch["long_text"].shape == (3, 32) and batch["sample_id"] == [item["sample_id"] for item in items]
    with pytest.raises(DataError, match="has no 'lat'"):
        TextImageCollate(tokenizer, ("image", "location"))(items)
    with pytest.raises(ValueError, match="unknown batch fields"):
        TextImageCollate(tokenizer, ("image", "caption_ids"))


def test_clip_objective_fixed_or_learnable_scale(tiny):
    model, _, _, tokenizer = tiny
    batch = {"image": torch.randn(8, 3, 64, 64), "text": tokenizer(CAPTIONS)}
    fixed = build_objective(ObjectiveConfig(learn_logit_scale=False, logit_scale=10.0))
    fixed.prepare(model)
    assert not model.logit_scale.requires_grad and model.logit_scale.item() == pytest.approx(math.log(10))
    losses = overfit(fixed, model, batch)
    assert losses[-1] < losses[0] and model.logit_scale.item() == pytest.approx(math.log(10))
    learnable = build_objective(ObjectiveConfig(logit_scale=20.0))
    learnable.prepare(model)
    assert model.logit_scale.requires_grad and model.logit_scale.item() == pytest.approx(math.log(20))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(500))
    learnable.after_step(model)
    assert model.logit_scale.item() == pytest.approx(math.log(100))


def test_coca_objective_adds_a_captioning_loss(tmp_path, tiny):
    torch.manual_seed(0)
    coca, _, _, tokenizer = build_model("rsvl-tiny-coca")
    projection = coca.text_decoder.text_projection
    assert torch.isfinite(projection).all()
    assert projection.std().item() == pytest.approx(coca.text_decoder.width ** -0.5, rel=0.1)
    batch = {"image": torch.randn(8, 3, 32, 32), "text": tokenizer(CAPTIONS)}
    objective = build_objective(ObjectiveConfig(name="coca", caption_weight=1.5))
    objective.prepare(coca)
    out = objective(coca, batch)
    assert out["caption_loss"] > 0 and out["contrastive_loss"] > 0
    assert out["loss"].item() == pytest.approx((out["caption_loss"] + out["contrastive_loss"]).item())
    losses = overfit(objective, coca, batch)
    assert losses[-1] < losses[0]
    model, _, _, tokenizer = tiny
    with pytest.raises(ModelError, match="needs a CoCa model"):
        objective(model, {"image": torch.randn(2, 3, 64, 64), "text": tokenizer(CAPTIONS[:2])})


def test_unknown_objective_lists_the_registered_ones():
    assert {"clip", "coca"} <= set(objective_names())
    with pytest.raises(ConfigError, match=r"unknown objective 'siglip'.*'clip'"):
        build_objective(ObjectiveConfig(name="siglip"))


def test_projection_only_and_last_blocks(tiny):
    model = tiny[0]
    apply_trainable(model, TrainableConfig(image_tower="projection", text_tower="projection"))
    assert trainable_names(model) == {"visual.proj", "text_projection", "logit_scale"}
    sizes = apply_trainable(model, TrainableConfig(image_tower="last_blocks", text_tower="freeze", last_blocks=1))
    names = trainable_names(model)
    assert "visual.proj" in names and "visual.ln_post.weight" in names and "logit_scale" in names
    assert any(n.startswith("visual.transformer.resblocks.1.") for n in names)
    assert not any(n.startswith(("visual.transformer.resblocks.0.", "visual.conv1", "transformer.", "token_embedding",
                                 "text_projection")) for n in names)
    assert sizes["trainable_params"] == sum(p.numel() for n, p in model.named_parameters() if n in names)
    set_train_mode(model, TrainableConfig(image_tower="last_blocks", text_tower="freeze"))
    assert model.visual.training and not model.transformer.training and not model.ln_final.training
    with pytest.raises(ConfigError, match="last_blocks=3 but the image tower has 2 blocks"):
        apply_trainable(model, TrainableConfig(image_tower="last_blocks", last_blocks=3))


def test_trainable_rules_on_the_local_default_towers():
    model = build_model("rsvl-effnetlite0-minilm", image_size=64)[0]
    with pytest.raises(ConfigError, match="text tower has no projection parameters"):
        apply_trainable(model, TrainableConfig(text_tower="projection"))
    apply_trainable(model, TrainableConfig(image_tower="projection", text_tower="freeze"))
    assert trainable_names(model) == {"visual.head.proj.weight", "logit_scale"}
    set_train_mode(model, TrainableConfig(image_tower="projection", text_tower="freeze"))
    assert not model.visual.trunk.bn1.training and not model.text.training and model.visual.head.training


def test_adapter_hook_runs_and_unknown_adapters_fail():
    model = build_model("rsvl-tiny")[0]
    calls = []

    @register_adapter("test-record-call")
    def record(model_: torch.nn.Module, cfg: TrainableConfig) -> None:
        calls.append(cfg.adapter)
        model_.visual.conv1.weight.requires_grad_(True)

    apply_trainable(model, TrainableConfig(image_tower="freeze", text_tower="freeze", adapter="test-record-call"))
    assert calls == ["test-record-call"] and trainable_names(model) == {"visual.conv1.weight", "logit_scale"}
    with pytest.raises(ConfigError, match=r"no adapter 'no-such-adapter' is registered \(registered: \['ia3', 'lora',"):
        apply_trainable(model, TrainableConfig(adapter="no-such-adapter"))


def test_weight_decay_groups(tiny):
    model = tiny[0]
    no_decay, decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert any(p is model.logit_scale for p in no_decay["params"])
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 or p is model.positional_embedding
                                                             for p in no_decay["params"])
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="no parameter to train"):
        param_groups(model, 0.1)


def test_checkpoint_round_trip(tmp_path, tiny):
    model, _, _, tokenizer = tiny
    objective = build_objective(ObjectiveConfig())
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
    scheduler = warmup_cosine(optimizer, 10, 2)
    batch = {"image": torch.randn(4, 3, 64, 64), "text": tokenizer(CAPTIONS[:4])}
    for _ in range(2):
        loss = objective(model, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    write_checkpoint(tmp_path / "ckpt", model, optimizer, scheduler, None, {"step": 2, "baseline": {"test_mR": 8.5}})
    torch.load(tmp_path / "ckpt" / TRAIN_STATE, weights_only=True)

    torch.manual_seed(1)
    fresh, _, _, _ = build_model("rsvl-tiny")
    fresh_optimizer = torch.optim.AdamW(param_groups(fresh, 0.1), lr=1e-3)
    fresh_scheduler = warmup_cosine(fresh_optimizer, 10, 2)
    progress = read_checkpoint(tmp_path / "ckpt", fresh, fresh_optimizer, fresh_scheduler, None)
    assert progress == {"step": 2, "baseline": {"test_mR": 8.5}}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    state, restored = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert all(torch.equal(state[k]["exp_avg"], restored[k]["exp_avg"]) for k in state)
    assert fresh_scheduler.last_epoch == 2
    with pytest.raises(ModelError, match="not a checkpoint"):
        read_checkpoint(tmp_path, fresh, fresh_optimizer, fresh_scheduler, None)


def test_tracking_helpers(tmp_path, optical, monkeypatch, repo_root):
    assert flatten({"a": {"b": 1, "c": None}, "d": [1, 2]}) == {"a.b": "1", "a.c": "null", "d": "[1, 2]"}
    assert data_version_tag(optical) == UNTRACKED
    project = tmp_path / "project"
    (project / ".dvc").mkdir(parents=True)
    (project / "data" / "optical").mkdir(parents=True)
    (project / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": "0123abcd.dir", "path": "data"}]}))
    assert data_version_tag(project / "data" / "optical") == "0123abcd:optical"
    monkeypatch.chdir(tmp_path)
    uri = resolve_tracking_uri("sqlite:///store/mlflow.db")
    assert uri == f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}" and (tmp_path / "store").is_dir()
    assert resolve_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"
    commit, _ = git_commit(repo_root)
    assert re.fullmatch(r"[0-9a-f]{40}", commit)


def test_run_names_and_identity():
    names = {new_run_name("closp") for _ in range(5)}
    assert len(names) == 5 and all(re.fullmatch(r"closp-\d{8}-\d{6}-[0-9a-f]{6}", n) for n in names)
    base = {"paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"}}
    cfg = RunConfig.model_validate(base)
    retried = RunConfig.model_validate({**base, "train": {"max_failures": 5, "log_every": 3}})
    other = RunConfig.model_validate({**base, "train": {"lr": 0.5}})
    scored = RunConfig.model_validate({**base, "evaluate": {"batch_size": 3}, "registry": {"model_name": "x"},
                                       "gate": {"minimums": {"test.mR": 1.0}}})
    assert identity_config(cfg) == identity_config(retried) == identity_config(scored) != identity_config(other)


def test_fit_refuses_stages_and_names_the_plan_runner(tmp_path, optical):
    cfg = RunConfig.model_validate({
        "paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
        "train": {"storage_path": str(tmp_path / "ray"), "stages": [{"name": "optical"}, {"name": "sar"}]},
    })
    with pytest.raises(ConfigError, match=r"train.stages \['optical', 'sar'\]; call rsvl.train.train_plan"):
        fit(cfg, optical, tmp_path / "out")
    assert not (tmp_path / "ray").exists()


def test_fit_checks_inputs_before_starting_ray(tmp_path, optical):
    def config(**train: object) -> RunConfig:
        return RunConfig.model_validate({
            "paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
            "train": {"storage_path": str(tmp_path / "ray"), **train},
            "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        })

    with pytest.raises(ConfigError, match="unknown objective"):
        fit(config(objective={"name": "nope"}), optical, tmp_path / "out")
    with pytest.raises(ConfigError, match="no adapter"):
        fit(config(trainable={"adapter": "no-such-adapter"}), optical, tmp_path / "out")
    with pytest.raises(DataError, match="dataset.json is missing"):
        fit(config(), tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(ConfigError, match="run name"):
        fit(config(), optical, tmp_path / "out", run_name="x' OR '1'='1")
    with pytest.raises(DataError, match="split 'test' is empty"):
        fit(config(), optical, tmp_path / "out")
    assert not (tmp_path / "ray").exists() and not (tmp_path / "mlflow.db").exists()


def test_train_command_fails_in_one_line_on_missing_data(tmp_path, repo_root):
    command = ["train", "--config", str(repo_root / "pipelines/sar_text/config.yaml"), "--data", str(tmp_path / "nowhere"),
               "--set", f"train.storage_path={tmp_path}", "--set", f"data.root={tmp_path / 'data'}"]
    single = CliRunner().invoke(app, [*command, "--set", "train.stages=[]", "--set", "train.ablations=[]"])
    assert single.exit_code == 1 and single.output.count("\n") == 1
    assert single.output.startswith("error:") and "nowhere is not an rsvl dataset" in single.output
    staged = CliRunner().invoke(app, command)  # a plan's stage datasets are checked before anything trains
    assert staged.exit_code == 1 and staged.output.count("\n") == 1
    assert staged.output == (f"error: train.stages 'optical': its dataset {tmp_path / 'data' / 'default' / 'optical'} "
                             f"does not exist (stage dataset 'default/optical' under data.root '{tmp_path / 'data'}')\n")


def test_one_band_with_band_stats_narrows_an_rgb_tower_and_a_grey_band_does_not(tmp_path):
    write_sar_chips(tmp_path / "sar", seed=0, count=12)
    torch.manual_seed(0)
    built = build_model("rsvl-tiny")
    rgb_filters = first_conv(built[0].visual)[1].weight.detach().clone()
    assert fit_model_to_data(built, ManifestDataset(tmp_path / "sar", split="train")) is built
    meta = json.loads((tmp_path / "sar" / "dataset.json").read_text())
    meta["band_stats"] = {"split": "train", "image": {"bands": ["VV"], "mean": [-12.0], "std": [4.0]}}
    (tmp_path / "sar" / "dataset.json").write_text(json.dumps(meta))
    rng = torch.get_rng_state()
    model, train, val, _ = fit_model_to_data(built, ManifestDataset(tmp_path / "sar", split="train"))
    assert torch.equal(torch.get_rng_state(), rng)
    conv = first_conv(model.visual)[1]
    assert conv.in_channels == 1 and torch.allclose(conv.weight[:, 0], rgb_filters.sum(dim=1))
    assert model.rsvl_spec["normalisation"] == {"mean": [-12.0], "std": [4.0]} and model.rsvl_spec["in_bands"] == 1
    for preprocess in (train, val):
        standardised = preprocess(torch.full((1, 80, 80), -12.0))
        assert standardised.shape[0] == 1 and torch.allclose(standardised, torch.zeros_like(standardised), atol=1e-5)
    reloaded = load_model(save_model(model, tmp_path / "model"))[0]
    assert first_conv(reloaded.visual)[1].in_channels == 1 and reloaded.rsvl_spec["bands"] == ["VV"]


@pytest.mark.parametrize(("omp", "cpus", "threads"), [
    (None, 2, 2),  # Ray's own setting (the worker's CPUs) or none: the worker's CPUs
    ("1", 2, 1),  # capped by the environment that started Ray
    ("4", 2, 2),  # never more threads than the worker has CPUs
    ("0", 3, 3), ("two", 3, 3),  # not a positive count: ignored
])
def test_a_workers_torch_threads_are_its_cpus_capped_by_omp_num_threads(monkeypatch, omp, cpus, threads):
    from rsvl.train.loop import worker_threads

    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert worker_threads(cpus) == threads


def test_coca_objective_matches_open_clips_coca_loss():
    # the captioning term over non-padding rows only: open_clip's value, gradients equal up to rounding
    from open_clip.loss import CoCaLoss

    torch.manual_seed(0)
    coca, _, _, tokenizer = build_model("rsvl-tiny-coca")
    batch = {"image": torch.randn(8, 3, 32, 32), "text": tokenizer(CAPTIONS)}
    assert (batch["text"] == 0).any() and (batch["text"] != 0).sum(1).unique().numel() > 1  # padded, ragged rows
    objective = build_objective(ObjectiveConfig(name="coca", caption_weight=1.5, contrastive_weight=0.5))
    objective.prepare(coca)
    ours = objective(coca, batch)
    ours["loss"].backward()
    ours_grads = {name: p.grad.clone() for name, p in coca.named_parameters() if p.grad is not None}
    coca.zero_grad()
    out = coca(image=batch["image"], text=batch["text"])
    reference = CoCaLoss(caption_loss_weight=1.5, clip_loss_weight=0.5, pad_id=0)
    contrastive, caption = reference(out["image_features"], out["text_features"], out["logits"], out["labels"],
                                     out["logit_scale"])
    (contrastive + caption).backward()
    assert ours["caption_loss"].item() == pytest.approx(caption.item(), rel=1e-6)
    assert ours["contrastive_loss"].item() == contrastive.item()
    assert set(ours_grads) == {name for name, p in coca.named_parameters() if p.grad is not None}
    for name, p in coca.named_parameters():
        if p.grad is not None:
            # summation order differs: tolerances at float32 rounding of the largest entry
            torch.testing.assert_close(ours_grads[name], p.grad, rtol=1e-5, atol=1e-6 * p.grad.abs().max().item(),
                                       msg=name)
