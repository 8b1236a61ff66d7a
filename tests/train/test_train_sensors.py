"""Sensor models in training: CLOSP's losses, per-sensor batches, the one-cycle schedule, trainable towers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from rsvl.config import ObjectiveConfig, TrainableConfig
from rsvl.data.dataset import ManifestDataset
from rsvl.data.generate import write_s1s2_patches
from rsvl.errors import DataError, ModelError
from rsvl.models.multisensor import SensorCLIP
from rsvl.train.data import CaptionPairs, EpochBatches, EpochBatchSampler, TextImageCollate
from rsvl.train.objectives import build_objective
from rsvl.train.schedule import OneCycle, lr_schedule
from rsvl.train.trainable import apply_trainable, set_train_mode, towers


class _Tower(nn.Module):
    """A fixed random linear map of the flattened image (bands x 4 x 4) into 8 dimensions, with a head."""

    def __init__(self, bands: int) -> None:
        super().__init__()
        self.trunk = nn.Linear(bands * 16, 16)
        self.head = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x.flatten(1)))


class _Text(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(50, 8)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embedding(tokens).mean(dim=1)


class _Location(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 8)

    def forward(self, latlon: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        out = self.linear(latlon / 90.0)
        return F.normalize(out, dim=-1) if normalize else out


def _model(location: bool = False) -> SensorCLIP:
    torch.manual_seed(0)
    return SensorCLIP({"s1": _Tower(2), "s2": _Tower(12)}, _Text(), {"s1": 2, "s2": 12},
                      _Location() if location else None)


def _batch(n: int = 5) -> dict:
    generator = torch.Generator().manual_seed(1)
    parts = {}
    for sensor, bands in (("s1", 2), ("s2", 12)):
        parts[sensor] = {"image": torch.randn(n, bands, 4, 4, generator=generator),
                         "text": torch.randint(0, 50, (n, 6), generator=generator),
                         "location": torch.rand(n, 2, generator=generator) * 60}
    return {"sample_id": [], "sensors": parts}


def _symmetric_ce(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """Reference: [CE(s a bᵀ, arange) + CE(s b aᵀ, arange)] / 2 of L2-normalised rows."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    labels = torch.arange(a.shape[0])
    return (F.cross_entropy(scale * a @ b.T, labels) + F.cross_entropy(scale * b @ a.T, labels)) / 2


def _reference(model: SensorCLIP, batch: dict, scale: float, *, mixed: bool = False, geo: bool = False) -> float:
    parts = batch["sensors"]
    images = {s: model.visual[s](p["image"]) for s, p in parts.items()}
    texts = {s: model.text(p["text"]) for s, p in parts.items()}
    places = {s: model.location.linear(p["location"] / 90.0) for s, p in parts.items()} if geo else {}
    groups = [list(parts)] if mixed else [[s] for s in parts]
    losses = []
    for group in groups:
        image = torch.cat([images[s] for s in group])
        loss = _symmetric_ce(image, torch.cat([texts[s] for s in group]), scale)
        if geo:
            loss = (loss + _symmetric_ce(torch.cat([places[s] for s in group]), image, scale)) / 2
        losses.append(loss)
    return float(sum(losses).detach() / len(losses))


@pytest.mark.parametrize("batching", ["per_sensor", "mixed"])
def test_closp_loss_is_the_mean_of_per_sensor_symmetric_cross_entropy(batching):
    model = _model()
    objective = build_objective(ObjectiveConfig(name="closp", logit_scale=1.0, learn_logit_scale=False,
                                                batching=batching))
    objective.prepare(model)
    assert not model.logit_scale.requires_grad and math.isclose(float(model.logit_scale.exp()), 1.0, rel_tol=1e-6)
    out = objective(model, _batch())
    expected = _reference(model, _batch(), 1.0, mixed=batching == "mixed")
    assert float(out["loss"].detach()) == pytest.approx(expected, rel=1e-5)
    keys = {"loss_s1", "loss_s2"} if batching == "per_sensor" else {"loss_s1_s2"}
    assert keys <= set(out)


def test_per_sensor_and_mixed_batching_differ_and_scale_matters():
    model = _model()
    batch = _batch()
    per, mixed = (build_objective(ObjectiveConfig(name="closp", logit_scale=10.0, learn_logit_scale=False,
                                                  batching=b)) for b in ("per_sensor", "mixed"))
    per.prepare(model)
    assert float(per(model, batch)["loss"].detach()) == pytest.approx(_reference(model, batch, 10.0), rel=1e-5)
    assert float(per(model, batch)["loss"].detach()) != pytest.approx(float(mixed(model, batch)["loss"].detach()), rel=1e-3)


def test_geoclosp_loss_averages_image_text_and_location_image_terms():
    model = _model(location=True)
    objective = build_objective(ObjectiveConfig(name="geoclosp", logit_scale=1.0, learn_logit_scale=False))
    objective.prepare(model)
    assert "location" in objective.batch_fields
    out = objective(model, _batch())
    assert float(out["loss"].detach()) == pytest.approx(_reference(model, _batch(), 1.0, geo=True), rel=1e-5)
    out["loss"].backward()
    assert model.location.linear.weight.grad is not None and model.location.linear.weight.grad.abs().sum() > 0


def test_sensor_objectives_refuse_a_one_tower_batch():
    objective = build_objective(ObjectiveConfig(name="closp"))
    with pytest.raises(ModelError, match="train.sensors"):
        objective(_model(), {"image": torch.zeros(2, 2, 4, 4), "text": torch.zeros(2, 6, dtype=torch.long)})


def test_encode_image_picks_the_tower_by_band_count():
    model = _model().eval()
    batch = _batch(3)["sensors"]
    for sensor in ("s1", "s2"):
        x = batch[sensor]["image"]
        assert torch.equal(model.encode_image(x), model.visual[sensor](x))
    with pytest.raises(DataError, match="3 bands fit no sensor tower"):
        model.encode_image(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ModelError, match="different band counts"):
        SensorCLIP({"s1": _Tower(2), "s2": _Tower(2)}, _Text(), {"s1": 2, "s2": 2})
    with pytest.raises(ModelError, match="no location encoder"):
        model.encode_location(torch.zeros(1, 2))


def test_trainable_projection_mode_reaches_every_sensor_tower():
    model = _model()
    assert set(towers(model)) == {"image_s1", "image_s2", "text"}
    sizes = apply_trainable(model, TrainableConfig(image_tower="projection", text_tower="freeze"))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"logit_scale", "visual.s1.head.weight", "visual.s1.head.bias",
                         "visual.s2.head.weight", "visual.s2.head.bias"}
    assert sizes["trainable_params"] == 1 + 2 * (16 * 8 + 8)
    apply_trainable(model, TrainableConfig(image_tower="freeze", text_tower="train"))
    set_train_mode(model, TrainableConfig(image_tower="freeze", text_tower="train"))
    assert not model.visual["s1"].training and not model.visual["s2"].training and model.text.training


@pytest.mark.parametrize("total,pct", [(100, 0.1), (7, 0.1), (30, 0.3), (1, 0.1), (45, 0.25)])
def test_one_cycle_matches_torch_one_cycle_lr(total, pct):
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=2e-3)
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=total, pct_start=pct)
    ours = OneCycle(total, pct)
    for step in range(total):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * ours(step), rel=1e-9)
        optimizer.step()
        if step < total - 1:
            reference.step()
    mine = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=2e-3)
    scheduler = lr_schedule(mine, "onecycle", total, 0, pct)
    assert mine.param_groups[0]["lr"] == pytest.approx(2e-3 * ours(0))
    assert OneCycle(100, 0.1)(0) == pytest.approx(1 / 25) and OneCycle(100, 0.1)(99) == pytest.approx(1 / 25e4)
    assert scheduler.state_dict()["last_epoch"] == 0
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_schedule(mine, "linear", total, 0, pct)


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    out = tmp_path_factory.mktemp("s1s2")
    write_s1s2_patches(out, count=40)
    return out


def _streams(dataset: ManifestDataset, batch_size: int, seeds: dict[str, int]) -> EpochBatches:
    collate = TextImageCollate(lambda texts: torch.zeros(len(texts), 4, dtype=torch.long), ("image", "text"))
    streams = {}
    for sensor, seed in seeds.items():
        rows = dataset.with_media(sensor)
        sampler = EpochBatchSampler(len(rows), batch_size, seed=seed)
        pairs = CaptionPairs(rows, lambda image: torch.as_tensor(image)[:, :2, :2], media=sensor, seed=seed)
        streams[sensor] = (sampler, pairs, torch.utils.data.DataLoader(pairs, batch_sampler=sampler, collate_fn=collate))
    return EpochBatches(streams)


def test_sensor_batches_take_one_batch_per_sensor_in_their_own_order_and_resume(patches):
    dataset = ManifestDataset(patches, split="train")
    half = dataset.with_media("s1")
    half.frame = half.frame.iloc[: len(half) // 2].reset_index(drop=True)  # S1 has half the rows: fewer batches
    batches = _streams(dataset, 4, {"s1": 11, "s2": 22})
    batches.streams["s1"] = _streams(half, 4, {"s1": 11}).streams["s1"]
    assert len(batches) == len(half) // 4 < len(dataset) // 4
    batches.set_epoch(1)
    epoch = list(batches)
    assert len(epoch) == len(batches)
    for batch in epoch:
        assert set(batch["sensors"]) == {"s1", "s2"}
        assert batch["sensors"]["s1"]["image"].shape[1] == 2 and batch["sensors"]["s2"]["image"].shape[1] == 12
        assert batch["sample_id"] == batch["sensors"]["s1"]["sample_id"] + batch["sensors"]["s2"]["sample_id"]
    # the two sensors draw different permutations (their own seeds), so their rows do not line up
    assert any(b["sensors"]["s1"]["sample_id"] != b["sensors"]["s2"]["sample_id"] for b in epoch)
    batches.set_epoch(1, 1)
    resumed = list(batches)
    assert [b["sample_id"] for b in resumed] == [b["sample_id"] for b in epoch[1:]]


def test_with_media_keeps_the_rows_that_have_the_column(patches):
    dataset = ManifestDataset(patches)
    assert len(dataset.with_media("s1")) == len(dataset) == 40
    assert len(dataset.with_media("image")) == 0
