"""LoRA and IA3 adapters (rsvl.train.peft_tuning): what trains, the merged saved model, checkpoint resume."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from mlflow import MlflowClient
from pydantic import ValidationError
from torch import nn

from rsvl.config import ObjectiveConfig, RunConfig, TrainableConfig
from rsvl.data.generate import write_optical_scenes
from rsvl.errors import ConfigError, ModelError
from rsvl.models import build_model, load_model, save_model
from rsvl.train import fit
from rsvl.train.checkpoint import MODEL_DIR, TRAIN_STATE, read_checkpoint, write_checkpoint
from rsvl.train.loop import RAISE_AT_STEP_ENV
from rsvl.train.objectives import build_objective
from rsvl.train.schedule import warmup_cosine
from rsvl.train.trainable import adapter_state_dict, apply_trainable, param_groups, set_train_mode

TINY, EFFNET = "rsvl-tiny", "rsvl-effnetlite0-minilm"
CAPTIONS = ["a dense forest", "a river bend", "a harbour with ships", "farmland"]
FROZEN = {"image_tower": "freeze", "text_tower": "freeze"}


def build(arch: str, seed: int = 0):
    """A fresh model: rsvl-tiny starts from a random init, so the seed fixes its weights."""
    torch.manual_seed(seed)
    return build_model(arch, **({"image_size": 64} if arch == EFFNET else {}))


def batch_for(tokenizer, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(4, 3, 64, 64, generator=generator), "text": tokenizer(CAPTIONS)}


def embed(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model.encode_image(batch["image"]), model.encode_text(batch["text"])])


def train_steps(model, optimizer, scheduler, batch, steps: int, first: int = 0) -> None:
    objective = build_objective(ObjectiveConfig())
    set_train_mode(model, TrainableConfig(**FROZEN))
    for step in range(first, first + steps):
        torch.manual_seed(1000 + step)  # the loop's per-step seed: same dropout draws on a resumed run
        loss = objective(model, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def optimizer_for(model: nn.Module, lr: float = 5e-2):
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=lr)
    return optimizer, warmup_cosine(optimizer, 20, 1)


def lora_default_layers(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(in, out) of each layer LoRA's defaults wrap: ViT MLP linears, HF query/key/value/dense, 1x1 convs."""
    layers = {}
    for name, module in model.named_modules():
        last = name.rsplit(".", 1)[-1]
        if isinstance(module, nn.Linear) and (name.endswith(("mlp.c_fc", "mlp.c_proj"))
                                              or last in {"query", "key", "value", "dense"}):
            layers[name] = (module.in_features, module.out_features)
        elif isinstance(module, nn.Conv2d) and last in {"conv_pw", "conv_pwl", "conv_head"}:
            assert module.kernel_size == (1, 1) and module.groups == 1
            layers[name] = (module.in_channels, module.out_channels)
    return layers


def ia3_default_sizes(model: nn.Module) -> int:
    """IA3's defaults: a scale per output of key/value, per input of mlp.c_proj, *output.dense and conv_pwl."""
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.endswith(("mlp.c_proj", ".output.dense")):
            total += module.in_features
        elif isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in {"key", "value"}:
            total += module.out_features
        elif isinstance(module, nn.Conv2d) and name.endswith("conv_pwl"):
            total += module.in_channels
    return total


def trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("arch", [TINY, EFFNET])
def test_lora_trains_only_its_matrices_and_starts_as_the_base_model(arch):
    model, _, _, tokenizer = build(arch)
    layers = lora_default_layers(model)
    assert layers, "the architecture has no layer LoRA's defaults target"
    rank = 4
    batch = batch_for(tokenizer)
    before = embed(model, batch)
    sizes = apply_trainable(model, TrainableConfig(**FROZEN, adapter="lora", lora_rank=rank, lora_alpha=8.0))
    expected = sum(rank * (fan_in + fan_out) for fan_in, fan_out in layers.values())
    names = set(trainable(model))
    lora = {n for n in names if ".lora_A." in n or ".lora_B." in n}
    assert names - lora == {"logit_scale"}
    assert {n.split(".lora_")[0] for n in lora} == set(layers)
    assert sizes["adapter_params"] == expected and sizes["trainable_params"] == expected + 1
    assert torch.equal(embed(model, batch), before)  # B = 0: the wrapped layers compute what they did


def test_every_adapter_parameter_trains_and_the_base_stays_frozen():
    model, _, _, tokenizer = build(TINY)
    apply_trainable(model, TrainableConfig(**FROZEN, adapter="lora", lora_rank=2,
                                           adapter_targets=["attn", "mlp.c_fc", "mlp.c_proj"]))
    width = model.visual.transformer.width
    # peft wraps the attention's in_proj (width -> 3 width) and out_proj (width -> width) together
    attention = 2 * (width + 3 * width) + 2 * (width + width)
    mlp = 2 * (width + 4 * width) * 2
    lora = {n: p for n, p in trainable(model).items() if n != "logit_scale"}
    assert sum(p.numel() for p in lora.values()) == 2 * 2 * (attention + mlp)  # two blocks, two towers
    start = {n: p.detach().clone() for n, p in lora.items()}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()
              if n.endswith(("in_proj_bias", "c_fc.base_layer.weight", "c_proj.base_layer.bias"))}
    optimizer, scheduler = optimizer_for(model)
    train_steps(model, optimizer, scheduler, batch_for(tokenizer), steps=3)
    assert [n for n, p in lora.items() if torch.equal(p, start[n])] == []
    assert len(frozen) == 12 and all(torch.equal(dict(model.named_parameters())[n], v) for n, v in frozen.items())


def test_lora_dropout_trains_inside_a_frozen_tower():
    model = build(TINY)[0]
    cfg = TrainableConfig(**FROZEN, adapter="lora", lora_dropout=0.1)
    apply_trainable(model, cfg)
    set_train_mode(model, cfg)
    dropout = model.visual.transformer.resblocks[0].mlp.c_fc.lora_dropout["default"]
    assert isinstance(dropout, nn.Dropout) and dropout.training
    assert not model.visual.training and not model.visual.transformer.resblocks[0].mlp.c_fc.base_layer.training


@pytest.mark.parametrize(("arch", "adapter"), [(TINY, "lora"), (EFFNET, "lora"), (TINY, "ia3"), (EFFNET, "ia3")])
def test_saved_model_is_the_merged_live_model(tmp_path, arch, adapter):
    model, _, _, tokenizer = build(arch)
    plain_keys = set(model.state_dict())
    batch = batch_for(tokenizer)
    base = embed(model, batch)
    apply_trainable(model, TrainableConfig(**FROZEN, adapter=adapter, lora_rank=4))
    optimizer, scheduler = optimizer_for(model, lr=0.1)
    train_steps(model, optimizer, scheduler, batch, steps=2)
    live = embed(model, batch)
    effect = (live - base).abs().max()
    # merged W + BA against W x + B(A x): float32 rounding, summed in an order that depends on the thread count,
    # grows with the output's scale (values up to ~8 after lr 0.1; measured 1.5e-5 at 2 threads, 3.1e-5 at 1)
    tolerance = 2e-5 * live.abs().max()
    assert effect > 10 * tolerance  # the adapter changed the model far more than the check allows
    saved = save_model(model, tmp_path / "model")
    assert set(model.state_dict()) == plain_keys
    loaded = load_model(saved)[0]
    assert (embed(loaded, batch) - live).abs().max() <= tolerance
    assert torch.equal(embed(model, batch), live)  # saving left the live model unmerged


def test_saved_model_loads_without_peft(tmp_path, monkeypatch):
    model, _, _, tokenizer = build(TINY)
    batch = batch_for(tokenizer)
    apply_trainable(model, TrainableConfig(**FROZEN, adapter="lora", adapter_targets=["attn", "mlp.c_fc"]))
    optimizer, scheduler = optimizer_for(model)
    train_steps(model, optimizer, scheduler, batch, steps=3)
    save_model(model, tmp_path / "model")
    monkeypatch.setitem(sys.modules, "peft", None)  # from here on any import of peft fails
    loaded = load_model(tmp_path / "model")[0]
    assert not [type(m) for m in loaded.modules() if type(m).__module__.startswith("peft")]
    assert isinstance(loaded.visual.transformer.resblocks[0].attn, nn.MultiheadAttention)
    assert torch.allclose(embed(loaded, batch), embed(model, batch), atol=1e-5, rtol=0)


def test_checkpoint_round_trip_resumes_identically(tmp_path):
    cfg = TrainableConfig(image_tower="freeze", text_tower="projection", adapter="lora", lora_rank=4,
                          lora_dropout=0.1)
    model, _, _, tokenizer = build(TINY)
    batch = batch_for(tokenizer)
    apply_trainable(model, cfg)
    optimizer, scheduler = optimizer_for(model)
    train_steps(model, optimizer, scheduler, batch, steps=3)
    write_checkpoint(tmp_path / "ckpt", model, optimizer, scheduler, None, {"step": 3})
    saved = torch.load(tmp_path / "ckpt" / TRAIN_STATE, weights_only=True)["adapter"]
    assert set(saved) == {n for n in trainable(model) if ".lora_" in n}
    train_steps(model, optimizer, scheduler, batch, steps=2, first=3)

    resumed, _, _, _ = build(TINY)
    apply_trainable(resumed, cfg)
    resumed_optimizer, resumed_scheduler = optimizer_for(resumed)
    assert read_checkpoint(tmp_path / "ckpt", resumed, resumed_optimizer, resumed_scheduler, None) == {"step": 3}
    assert all(torch.equal(resumed.state_dict()[n], v) for n, v in load_model(tmp_path / "ckpt" / MODEL_DIR)[0]
               .state_dict().items())
    train_steps(resumed, resumed_optimizer, resumed_scheduler, batch, steps=2, first=3)
    ours, theirs = dict(resumed.named_parameters()), dict(model.named_parameters())
    assert set(ours) == set(theirs) and all(torch.equal(ours[n], theirs[n]) for n in ours)
    assert torch.equal(embed(resumed, batch), embed(model, batch))


def test_resuming_needs_the_same_start_and_the_adapter_state(tmp_path):
    cfg = TrainableConfig(**FROZEN, adapter="lora")
    model, _, _, tokenizer = build(TINY)
    apply_trainable(model, cfg)
    optimizer, scheduler = optimizer_for(model)
    train_steps(model, optimizer, scheduler, batch_for(tokenizer), steps=2)
    write_checkpoint(tmp_path / "ckpt", model, optimizer, scheduler, None, {"step": 2})

    other = build(TINY, seed=1)[0]  # another random start: its frozen weights are not the run's
    apply_trainable(other, cfg)
    with pytest.raises(ModelError, match="differs by .* from this model's frozen weight merged with its adapter"):
        read_checkpoint(tmp_path / "ckpt", other, *optimizer_for(other), None)

    state_file = tmp_path / "ckpt" / TRAIN_STATE
    payload = torch.load(state_file, weights_only=True)
    torch.save({**payload, "adapter": {}}, state_file)
    same = build(TINY)[0]
    apply_trainable(same, cfg)
    with pytest.raises(ModelError, match=r"adapter state does not fit the model: 16 adapter parameters missing"):
        read_checkpoint(tmp_path / "ckpt", same, *optimizer_for(same), None)


def test_ia3_scales_channels_starts_at_one_and_skips_weight_decay():
    model, _, _, tokenizer = build(EFFNET)
    batch = batch_for(tokenizer)
    before = embed(model, batch)
    expected = ia3_default_sizes(model)
    sizes = apply_trainable(model, TrainableConfig(**FROZEN, adapter="ia3"))
    scales = {n: p for n, p in trainable(model).items() if n != "logit_scale"}
    assert sizes["adapter_params"] == expected == sum(p.numel() for p in scales.values())
    assert all(".ia3_l." in n and bool((p == 1).all()) for n, p in scales.items())
    assert torch.equal(embed(model, batch), before)
    no_decay, decay = param_groups(model, 0.5)
    assert {id(p) for p in scales.values()} <= {id(p) for p in no_decay["params"]} and not decay["params"]
    assert set(adapter_state_dict(model)) == set(scales)


def test_targets_peft_cannot_use_are_refused():
    def refused(arch: str, match: str, **cfg: object) -> None:
        model = build(arch)[0]
        with pytest.raises(ConfigError, match=match):
            apply_trainable(model, TrainableConfig(**FROZEN, **cfg))

    refused(TINY, "forward is never called", adapter="lora", adapter_targets=["attn.out_proj"])
    refused(TINY, "only LoRA can wrap", adapter="ia3", adapter_targets=["attn"])
    refused(EFFNET, "grouped \\(depthwise, groups=32\\) convolution", adapter="lora", adapter_targets=["conv_dw"])
    refused(EFFNET, "'querry' names no layer.*wrappable layers end in", adapter="lora",
            adapter_targets=["conv_pw", "querry"])
    refused(TINY, "'mlp' names no layer the adapter can wrap", adapter="lora", adapter_targets=["mlp"])
    refused(TINY, "ia3_feedforward: 'value' names none of the IA3 targets", adapter="ia3",
            adapter_targets=["mlp.c_fc"], ia3_feedforward=["value"])
    model = build(TINY)[0]
    apply_trainable(model, TrainableConfig(**FROZEN, adapter="lora"))
    with pytest.raises(ConfigError, match="already carries an adapter"):
        apply_trainable(model, TrainableConfig(**FROZEN, adapter="lora"))


def test_adapter_settings_are_validated():
    for bad, match in [({"lora_rank": 0}, "greater than or equal to 1"), ({"lora_alpha": 0.0}, "greater than 0"),
                       ({"lora_dropout": 1.0}, "less than 1"), ({"adapter_targets": []}, "at least 1 item"),
                       ({"adapter_targets": ["mlp.*"]}, "'mlp.\\*' is not a dotted module name suffix")]:
        with pytest.raises(ValidationError, match=match):
            TrainableConfig(adapter="lora", **bad)
    assert TrainableConfig.model_validate(json.loads('{"adapter": "lora", "lora_alpha": 16}')).lora_alpha == 16.0


@pytest.mark.slow  # two Ray Train local-mode fits (~20 s): in `make test`, not `make test-fast`
def test_a_lora_fit_retried_from_its_checkpoint_matches_the_uninterrupted_fit(tmp_path, monkeypatch):
    write_optical_scenes(tmp_path / "optical", seed=0, per_class=10)
    cfg = RunConfig.model_validate({
        "paper": "sar_text", "profile": "local", "model": {"name": TINY},
        "train": {"batch_size": 8, "max_steps": 6, "lr": 1e-2, "warmup_steps": 1, "log_every": 1,
                  "checkpoint_every": 2, "cpus_per_worker": 2, "num_workers": 0, "max_failures": 1,
                  "storage_path": str(tmp_path / "ray"),
                  "trainable": {**FROZEN, "adapter": "lora", "lora_rank": 4, "lora_dropout": 0.1}},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "test-peft"},
    })
    reference = fit(cfg, tmp_path / "optical", tmp_path / "reference")
    monkeypatch.setenv(RAISE_AT_STEP_ENV, "4")
    retried = fit(cfg, tmp_path / "optical", tmp_path / "retried")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")

    def logged(run_id: str, key: str) -> dict[int, float]:
        return {m.step: m.value for m in client.get_metric_history(run_id, key)}

    assert logged(retried.mlflow_run_id, "resumed_from_step") == {2: 2.0}
    assert logged(retried.mlflow_run_id, "loss") == logged(reference.mlflow_run_id, "loss")  # exactly
    fresh = build(TINY)[0]
    expected = sum(4 * (fan_in + fan_out) for fan_in, fan_out in lora_default_layers(fresh).values())
    assert logged(reference.mlflow_run_id, "adapter_params") == {0: expected}
    ours, theirs = load_model(reference.model_dir)[0].state_dict(), load_model(retried.model_dir)[0].state_dict()
    assert set(ours) == set(fresh.state_dict()) and all(torch.equal(ours[k], theirs[k]) for k in ours)
