"""Per-sensor trunk weights (``sensor_weights``, ``pretrained="sensor"``): CLOSP's SSL4EO-S12 ResNet-50 towers.

No network: the torchgeo files are stood in for by files of the same layout (timm ``resnet50`` with
``in_chans`` 2 or 13 and its ``fc`` classifier, every tensor random), read either from a local
path (a user config without ``repo``) or from a Hugging Face cache folder laid out as the hub
writes it, at the revision the packaged config pins.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from rsvl.data.adapters.bigearthnet import S1_BANDS, S2_BANDS
from rsvl.errors import ModelError, WeightsNotCachedError
from rsvl.models import build_model, load_model, save_model
from rsvl.models.architectures import MODELS_DIR_ENV, PACKAGED_DIR, get_architecture, load_architecture
from rsvl.models.multisensor import build_sensor_model
from rsvl.models.sensor_weights import band_columns, sensor_weights_file

ARCH = "rsvl-resnet50-ssl4eo-minilm"
CONFIG = PACKAGED_DIR / f"{ARCH}.json"
TORCHGEO_S2 = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8a", "B9", "B10", "B11", "B12"]
"""torchgeo's spelling of the SSL4EO-S12 L1C bands, in the weights' channel order."""
B10 = TORCHGEO_S2.index("B10")
S1_STATS = {"bands": list(S1_BANDS), "mean": [-11.0, -18.0], "std": [4.0, 5.0]}
S2_STATS = {"bands": list(S2_BANDS), "mean": [900.0 + 100 * i for i in range(12)],
            "std": [400.0 + 10 * i for i in range(12)]}
S2_13_STATS = {"bands": TORCHGEO_S2, "mean": [1000.0] * 13, "std": [500.0] * 13}


def torchgeo_like_state(in_chans: int, seed: int) -> dict[str, torch.Tensor]:
    """A timm ``resnet50`` state dict (the torchgeo layout, ``fc`` included) with every tensor random."""
    layout = timm.create_model("resnet50", in_chans=in_chans).state_dict()
    names_and_shapes = {key: (tensor.shape, tensor.dtype) for key, tensor in layout.items()}
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, (shape, dtype) in names_and_shapes.items():
        if not dtype.is_floating_point:
            state[key] = torch.randint(0, 1000, shape, generator=generator, dtype=dtype)
            continue
        values = torch.rand(shape, generator=generator) if len(shape) == 1 else torch.randn(shape, generator=generator)
        # scaled so 50 layers keep finite activations: He-scaled kernels, BatchNorm gains and variances near 1
        if len(shape) > 1:
            state[key] = values * (2.0 / values[0].numel()) ** 0.5
        elif key.endswith(("running_var", ".weight")):
            state[key] = 0.5 + values
        else:
            state[key] = 0.2 * (values - 0.5)
    return state


@pytest.fixture(scope="module")
def fake_files(tmp_path_factory) -> dict[str, Path]:
    """The two torchgeo-like files: S1 as a ``.pth`` (torch.save, as torchgeo ships), S2 as safetensors."""
    folder = tmp_path_factory.mktemp("ssl4eo")
    s1, s2 = folder / "s1_moco.pth", folder / "s2_moco.safetensors"
    torch.save(torchgeo_like_state(2, seed=1), s1)
    save_file(torchgeo_like_state(13, seed=2), str(s2))
    return {"s1": s1, "s2": s2}


def local_copy_config(folder: Path, files: dict[str, Path], name: str = "local-ssl4eo") -> str:
    """The packaged config under another name, its sensor weights pointing at local files (no ``repo``)."""
    config = json.loads(CONFIG.read_text())
    for sensor, entry in config["sensor_weights"].items():
        entry.pop("repo"), entry.pop("revision")
        entry["file"] = str(files[sensor])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(config))
    return name


def expected_trunk(state: dict[str, torch.Tensor], keep: list[int]) -> dict[str, torch.Tensor]:
    """The file's tensors without ``fc.``, the first conv reduced to the input columns ``keep``."""
    expected = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected["conv1.weight"] = state["conv1.weight"][:, keep]
    return expected


def assert_trunk_equals(trunk: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    actual = trunk.state_dict()
    assert sorted(actual) == sorted(expected)
    for key, tensor in expected.items():
        assert torch.equal(actual[key], tensor), key


def no_network(monkeypatch) -> list:
    """Record every host lookup or connection (none may happen)."""
    attempts: list = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: attempts.append(args) or [])
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: attempts.append(address))
    return attempts


def test_random_init_builds_a_resnet50_tower_per_sensor_and_the_cls_minilm_text_tower(monkeypatch):
    attempts = no_network(monkeypatch)
    torch.manual_seed(0)
    model, _, val, tokenizer = build_sensor_model(ARCH, None, {"s1": (2, S1_STATS), "s2": (12, S2_STATS)})
    assert attempts == []
    for sensor, bands in (("s1", 2), ("s2", 12)):
        tower = model.visual[sensor]
        assert type(tower.trunk).__name__ == "ResNet" and tower.trunk.conv1.in_channels == bands
        assert (tower.head.proj.in_features, tower.head.proj.out_features) == (2048, 384)
    assert model.rsvl_spec["image_size"] == [120, 120]
    assert type(model.text.pooler).__name__ == "ClsLastHiddenStatePooler"
    assert tokenizer(["trees. water"]).shape == (1, 64)
    # without sensor weights each tower standardises with its dataset's statistics
    s1 = np.random.default_rng(0).normal(-12, 4, (2, 120, 120)).astype(np.float32)
    mean, std = torch.tensor([-11.0, -18.0]).view(2, 1, 1), torch.tensor([4.0, 5.0]).view(2, 1, 1)
    reference = (torch.from_numpy(s1) - mean) / std
    assert torch.allclose(val(s1), reference, atol=1e-5)
    model.eval()
    with torch.no_grad():
        assert model.encode_image(val(s1)[None]).shape == (1, 384)


def test_sensor_weights_fill_each_trunk_from_its_file_b10_dropped(tmp_path, monkeypatch, fake_files):
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "configs"))
    name = local_copy_config(tmp_path / "configs", fake_files)
    torch.manual_seed(0)
    model, _, val, _ = build_sensor_model(name, "sensor", {"s1": (2, S1_STATS), "s2": (12, S2_STATS)})
    s1_state = torch.load(fake_files["s1"], weights_only=True)
    s2_state = load_file(str(fake_files["s2"]))
    assert_trunk_equals(model.visual["s1"].trunk, expected_trunk(s1_state, [0, 1]))
    without_b10 = [i for i in range(13) if i != B10]
    assert_trunk_equals(model.visual["s2"].trunk, expected_trunk(s2_state, without_b10))
    assert torch.equal(model.visual["s2"].trunk.conv1.weight,
                       torch.cat([s2_state["conv1.weight"][:, :10], s2_state["conv1.weight"][:, 11:]], dim=1))
    # the weights' own input scaling replaces the dataset statistics: S2 / 10000, S1 SSL4EO-S12 standardisation
    spec = model.rsvl_spec["sensors"]
    assert spec["s2"]["normalisation"] == {"mean": [0.0] * 12, "std": [10000.0] * 12}
    assert spec["s1"]["normalisation"] == {"mean": [-12.59, -20.26], "std": [5.26, 5.91]}
    assert spec["s2"]["widening"].startswith("first-conv columns ['B01', 'B02'")
    assert "'B10'" not in spec["s2"]["widening"]
    s2 = np.random.default_rng(1).uniform(0, 8000, (12, 120, 120)).astype(np.float32)
    assert torch.allclose(val(s2), torch.from_numpy(s2) / 10000, atol=1e-6)

    # the saved model reloads with the same towers
    model.eval()
    loaded, _, loaded_val, _ = load_model(save_model(model, tmp_path / "saved"))
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(loaded_val(s2)[None]), model.encode_image(val(s2)[None]))
    assert_trunk_equals(loaded.visual["s2"].trunk, expected_trunk(s2_state, without_b10))


def test_thirteen_band_data_keeps_every_column_and_other_orders_are_followed(tmp_path, monkeypatch, fake_files):
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "configs"))
    name = local_copy_config(tmp_path / "configs", fake_files)
    s2_state = load_file(str(fake_files["s2"]))
    model = build_model(name, "sensor", 13, S2_13_STATS, sensor="s2", image_size=64)[0]
    assert_trunk_equals(model.visual.trunk, expected_trunk(s2_state, list(range(13))))
    # three bands in true-colour order take the B4, B3, B2 columns (indices 3, 2, 1 of the file)
    rgb = {"bands": ["B04", "B03", "B02"], "mean": [0.0] * 3, "std": [1.0] * 3}
    model = build_model(name, "sensor", 3, rgb, sensor="s2", image_size=64)[0]
    assert torch.equal(model.visual.trunk.conv1.weight, s2_state["conv1.weight"][:, [3, 2, 1]])
    assert model.rsvl_spec["normalisation"] == {"mean": [0.0] * 3, "std": [10000.0] * 3}


def test_the_packaged_config_reads_the_pinned_hub_file_from_the_cache(tmp_path, monkeypatch, fake_files):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    attempts = no_network(monkeypatch)
    entry = get_architecture(ARCH).sensor_weights["s1"]
    assert entry.repo == "torchgeo/resnet50_sentinel1_all_moco"
    # the hub cache layout: models--<owner>--<name>/snapshots/<commit>/<file>
    snapshot = tmp_path / "hub" / "models--torchgeo--resnet50_sentinel1_all_moco" / "snapshots" / entry.revision
    snapshot.mkdir(parents=True)
    (snapshot / entry.file).write_bytes(fake_files["s1"].read_bytes())
    assert sensor_weights_file(entry, str(tmp_path / "hub")) == str(snapshot / entry.file)
    model = build_model(ARCH, "sensor", 2, S1_STATS, sensor="s1", image_size=64, cache_dir=str(tmp_path / "hub"))[0]
    assert attempts == []
    assert_trunk_equals(model.visual.trunk, expected_trunk(torch.load(fake_files["s1"], weights_only=True), [0, 1]))


def test_offline_and_not_cached_fails_before_any_tower_is_built(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    attempts = no_network(monkeypatch)
    built = []
    import rsvl.models.factory as factory

    monkeypatch.setattr(factory.open_clip, "create_model", lambda *args, **kwargs: built.append(args))
    with pytest.raises(WeightsNotCachedError) as caught:
        build_sensor_model(ARCH, "sensor", {"s1": (2, S1_STATS), "s2": (12, S2_STATS)}, cache_dir=str(tmp_path))
    assert attempts == [] and built == []
    message = str(caught.value)
    for needle in ("resnet50_sentinel1_all_moco-906e4356.pth", "torchgeo/resnet50_sentinel1_all_moco",
                   "e79862c667853c10a709bdd77ea8ffbad0e0f1cf", "not cached", "HF_HUB_OFFLINE=1", str(tmp_path)):
        assert needle in message
    with pytest.raises(WeightsNotCachedError, match="resnet50_sentinel2_all_moco-df8b932e.pth"):
        build_model(ARCH, "sensor", 12, S2_STATS, sensor="s2", cache_dir=str(tmp_path))
    assert built == []


def test_sensor_weights_need_a_known_sensor_and_bands_the_file_has(tmp_path, monkeypatch, fake_files):
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "configs"))
    name = local_copy_config(tmp_path / "configs", fake_files)
    with pytest.raises(ModelError, match="build_sensor_model"):
        build_model(name, "sensor", 2, S1_STATS)
    with pytest.raises(ModelError, match=r"sensor_weights for \['s1', 's2'\], not 'image'"):
        build_model(name, "sensor", 2, S1_STATS, sensor="image")
    with pytest.raises(ModelError, match="has no sensor_weights"):
        build_model("rsvl-effnetlite0-minilm-cls", "sensor", 2, S1_STATS, sensor="s1")
    hh = {"bands": ["HH", "HV"], "mean": [0.0, 0.0], "std": [1.0, 1.0]}
    with pytest.raises(ModelError, match=r"band 'HH' of the data is not among the weights' input bands \['VV', 'VH'\]"):
        build_model(name, "sensor", 2, hh, sensor="s1", image_size=64)
    # a file whose first convolution does not take the listed bands is refused, naming the file
    config = json.loads((tmp_path / "configs" / f"{name}.json").read_text())
    config["sensor_weights"]["s1"]["file"] = str(fake_files["s2"])
    (tmp_path / "swapped").mkdir()
    (tmp_path / "swapped" / "swapped.json").write_text(json.dumps(config))
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "swapped"))  # a folder is registered once: a new one
    with pytest.raises(ModelError, match=r"s2_moco.safetensors -> visual.trunk: first convolution 'conv1.weight' is "
                                         r"\(64, 13, 7, 7\); the config lists 2 input bands"):
        build_model("swapped", "sensor", 2, S1_STATS, sensor="s1", image_size=64)


def test_a_file_of_other_key_names_loads_by_order(tmp_path, monkeypatch):
    state = torchgeo_like_state(2, seed=3)
    # another implementation's names (fc kept, and dropped by its prefix), same tensors in the same order
    renamed = {(key if key.startswith("fc.") else f"encoder.t{index:03d}"): tensor
               for index, (key, tensor) in enumerate(state.items())}
    torch.save(renamed, tmp_path / "renamed.pth")
    config = json.loads(CONFIG.read_text())
    config["sensor_weights"] = {"s1": {**config["sensor_weights"]["s1"], "match": "order",
                                       "file": "renamed.pth"}}
    del config["sensor_weights"]["s1"]["repo"], config["sensor_weights"]["s1"]["revision"]
    (tmp_path / "by-order.json").write_text(json.dumps(config))  # a relative file is read beside the config
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    model = build_model("by-order", "sensor", 2, S1_STATS, sensor="s1", image_size=64)[0]
    assert_trunk_equals(model.visual.trunk, expected_trunk(state, [0, 1]))
    # safetensors stores tensors by dtype and name, not in the order written: no order to match
    save_file(renamed, str(tmp_path / "renamed.safetensors"))
    config["sensor_weights"]["s1"]["file"] = "renamed.safetensors"
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "by-order-st.json").write_text(json.dumps(config))
    shutil.copy(tmp_path / "renamed.safetensors", tmp_path / "st")
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "st"))
    with pytest.raises(ModelError, match="renamed.safetensors -> visual.trunk: match 'order' needs a .pth"):
        build_model("by-order-st", "sensor", 2, S1_STATS, sensor="s1", image_size=64)


def test_a_file_without_batchnorm_counters_loads(tmp_path, monkeypatch):
    state = torchgeo_like_state(2, seed=4)
    # older torchvision-era checkpoints lack num_batches_tracked; BatchNorm fills it with 0
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, tmp_path / "old.pth")
    name = local_copy_config(tmp_path / "configs", {"s1": tmp_path / "old.pth", "s2": tmp_path / "absent.pth"})
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "configs"))
    model = build_model(name, "sensor", 2, S1_STATS, sensor="s1", image_size=64)[0]
    expected = expected_trunk(state, [0, 1])
    expected.update({k: torch.tensor(0) for k in expected if k.endswith("num_batches_tracked")})
    assert_trunk_equals(model.visual.trunk, expected)


def test_band_columns_follow_the_data_order_with_canonical_names():
    entry = get_architecture(ARCH).sensor_weights["s2"]
    assert band_columns(entry, ["S2_B12", "B8a", "B1"], 3) == [12, 8, 0]
    assert band_columns(entry, None, 13) == list(range(13))
    with pytest.raises(ModelError, match="12 unnamed bands cannot be matched"):
        band_columns(entry, None, 12)


@pytest.mark.parametrize(("change", "rule"), [
    ({"weights": 1}, r"sensor_weights.s1: unknown keys \['weights'\]"),
    ({"bands": "VV"}, r"sensor_weights.s1: bands must be a list of non-empty strings"),
    ({"bands": ["VV", "vv"]}, r"sensor_weights.s1: bands \['VV', 'vv'\] repeat a name"),
    ({"normalisation": {"mean": [0.0], "std": [1.0]}}, r"normalisation.mean must list one number per band \(2\)"),
    ({"normalisation": {"mean": [0.0, 0.0], "std": [1.0, 0.0]}}, r"normalisation.std must be positive"),
    ({"repo": "resnet50"}, r"repo must be 'owner/name'"),
    ({"match": "shape"}, r"match must be 'name' or 'order'"),
])
def test_a_malformed_sensor_weights_entry_names_the_file_and_rule(tmp_path, change, rule):
    config = json.loads(CONFIG.read_text())
    config["sensor_weights"]["s1"].update(change)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ModelError, match=f"{path}:{rule}" if "sensor_weights" in rule else rule):
        load_architecture(path)


def test_the_packaged_entries_cover_the_crisis_bands():
    architecture = get_architecture(ARCH)
    assert set(architecture.sensor_weights) == {"s1", "s2"}
    assert band_columns(architecture.sensor_weights["s1"], list(S1_BANDS), 2) == [0, 1]
    s2 = architecture.sensor_weights["s2"]
    assert [s2.bands[c] for c in band_columns(s2, list(S2_BANDS), 12)] == [b for b in s2.bands if b != "B10"]


def test_the_closp_cluster_profile_builds_the_papers_encoders(repo_root):
    from rsvl.config import load_config

    path = repo_root / "pipelines" / "closp" / "config.yaml"
    for track in ("main", "geoclosp"):
        cluster = load_config(path, "cluster", track=track)
        assert (cluster.model.name, cluster.model.pretrained, cluster.model.image_size) == (ARCH, "sensor", 120)
        assert set(get_architecture(cluster.model.name).sensor_weights) == set(cluster.train.sensors) == {"s1", "s2"}
    assert load_config(path, "cluster", track="geoclosp").model.location is not None
    local = load_config(path, "local").model  # the local profile keeps its offline packaged towers
    assert (local.name, local.pretrained) == ("rsvl-effnetlite0-minilm-cls", "packaged")
