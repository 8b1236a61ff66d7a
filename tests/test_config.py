"""Config loading: profiles merge over defaults, and a bad value fails naming file, field and rule."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml

from rsvl.config import (
    PAPERS,
    RunConfig,
    configure_track,
    deep_merge,
    load_config,
    load_tracks,
    parse_overrides,
    tracks_json,
    write_config_file,
)
from rsvl.errors import ConfigError


def write(tmp_path: Path, content: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


BASE = {
    "paper": "sar_text",
    "defaults": {"train": {"epochs": 3, "lr": 1.0e-4}},
    "profiles": {
        "local": {"model": {"name": "tiny"}},
        "cluster": {"model": {"name": "ViT-L-14", "pretrained": "openai"}, "train": {"use_gpu": True}},
    },
}


def test_profile_overrides_defaults(tmp_path):
    local = load_config(write(tmp_path, BASE), "local")
    cluster = load_config(write(tmp_path, BASE), "cluster")
    assert local.model.name == "tiny" and local.train.use_gpu is False
    assert cluster.model.pretrained == "openai" and cluster.train.use_gpu is True
    assert cluster.train.epochs == local.train.epochs == 3


def test_overrides_apply_last_and_parse_yaml_values(tmp_path):
    cfg = load_config(write(tmp_path, BASE), "local", ["train.epochs=7", "data.seed=11"])
    assert (cfg.train.epochs, cfg.data.seed) == (7, 11)
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}
    assert parse_overrides(["lr=1e-3", "wd=-2.5E+1", "tag=1e3x"]) == {"lr": 1e-3, "wd": -25.0, "tag": "1e3x"}
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_overrides(["epochs"])


def test_bad_value_names_file_field_and_rule(tmp_path):
    bad = deep_merge(BASE, {"defaults": {"train": {"lr": -1.0}}})
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, bad), "local")
    message = str(err.value)
    assert "config.yaml (profile local)" in message
    assert "train.lr" in message and "greater than 0" in message


def test_strict_types_and_unknown_keys_rejected(tmp_path):
    typo = deep_merge(BASE, {"defaults": {"train": {"epoch": 3}}})
    with pytest.raises(ConfigError, match="train.epoch: Extra inputs are not permitted"):
        load_config(write(tmp_path, typo), "local")
    as_text = deep_merge(BASE, {"defaults": {"train": {"epochs": "3"}}})
    with pytest.raises(ConfigError, match="train.epochs: Input should be a valid integer"):
        load_config(write(tmp_path, as_text), "local")


def test_cross_field_rules(tmp_path):
    ingest_without_path = deep_merge(BASE, {"defaults": {"data": {"source": "ingest", "format": "karpathy"}}})
    with pytest.raises(ConfigError, match="needs both 'format' and 'path'"):
        load_config(write(tmp_path, ingest_without_path), "local")
    words = deep_merge(BASE, {"defaults": {"data": {"captions": {"min_words": 9, "max_words": 3}}}})
    with pytest.raises(ConfigError, match="min_words"):
        load_config(write(tmp_path, words), "local")


def test_missing_file_profile_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    only_local = {**BASE, "profiles": {"local": BASE["profiles"]["local"]}}
    with pytest.raises(ConfigError, match="no profile 'cluster'"):
        load_config(write(tmp_path, only_local), "cluster")
    broken = tmp_path / "broken.yaml"
    broken.write_text("paper: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_config_is_frozen_and_digest_tracks_content(tmp_path):
    cfg = load_config(write(tmp_path, BASE), "local")
    with pytest.raises(pydantic.ValidationError):
        cfg.train.epochs = 5  # type: ignore[misc]
    other = load_config(write(tmp_path, BASE), "local", ["train.epochs=4"])
    assert cfg.digest() == load_config(write(tmp_path, BASE), "local").digest()
    assert cfg.digest() != other.digest()


def test_every_committed_paper_config_loads_in_both_profiles(repo_root):
    configs = sorted((repo_root / "pipelines").glob("*/config.yaml"))
    assert configs, "no pipelines/<paper>/config.yaml committed"
    for path in configs:
        for profile in ("local", "cluster"):
            for track, cfg in load_tracks(path, profile).items():
                assert isinstance(cfg, RunConfig) and cfg.track == track
                assert cfg.paper == path.parent.name and cfg.paper in PAPERS


TRACKED = deep_merge(BASE, {
    "defaults": {"data": {"seed": 5}, "registry": {"model_name": "clip"},
                 "gate": {"minimums": {"test.mR": 20.0}, "max_regression": {"test.i2t_r1": 5.0}},
                 "train": {"stages": [{"name": "optical", "dataset": "default/optical"}, {"name": "sar", "epochs": 4}],
                           "ablations": [{"name": "sar_only", "stages": ["sar"]}]}},
    "tracks": {"captioner": {
        "defaults": {"registry": {"model_name": "coca"}, "train": {"stages": [], "ablations": [], "epochs": 9},
                     "gate": {"minimums": {"test.BLEU_4": 0.05}}},
        "profiles": {"local": {"model": {"name": "tiny-coca"}}},
    }},
})


def test_a_track_lays_its_sections_over_the_papers_and_shares_data(tmp_path):
    tracks = load_tracks(write(tmp_path, TRACKED), "local")
    assert list(tracks) == ["main", "captioner"]
    main, captioner = tracks["main"], tracks["captioner"]
    assert (main.track, main.registry.model_name, main.model.name) == ("main", "clip", "tiny")
    assert [s.name for s in main.train.stages] == ["optical", "sar"] and main.train.stages[1].epochs == 4
    assert (captioner.registry.model_name, captioner.model.name, captioner.train.epochs) == ("coca", "tiny-coca", 9)
    assert captioner.train.stages == [] and captioner.train.lr == main.train.lr == 1.0e-4
    assert captioner.data == main.data and captioner.data.seed == 5
    assert main.gate.minimums == {"test.mR": 20.0} and main.gate.max_regression == {"test.i2t_r1": 5.0}
    assert captioner.gate.minimums == {"test.BLEU_4": 0.05} and captioner.gate.max_regression == {}
    cluster = load_tracks(write(tmp_path, TRACKED), "cluster")["captioner"]
    assert cluster.model.name == "ViT-L-14"  # the track has no cluster layer: the paper's cluster model


def test_track_overrides_apply_to_their_track_only(tmp_path):
    path = write(tmp_path, TRACKED)
    items = ["train.lr=0.5", "captioner:train.epochs=2"]
    main = load_config(path, "local", items)
    captioner = load_config(path, "local", items, track="captioner")
    assert (main.train.lr, main.train.epochs) == (0.5, 3)
    assert (captioner.train.lr, captioner.train.epochs) == (0.5, 2)
    with pytest.raises(ConfigError, match="names track 'coca'"):
        load_config(path, "local", ["coca:train.epochs=2"])
    with pytest.raises(ConfigError, match="shared by every track"):
        load_config(path, "local", ["captioner:data.seed=2"])


def test_a_track_may_not_set_shared_sections_or_be_unknown(tmp_path):
    bad = deep_merge(TRACKED, {"tracks": {"captioner": {"defaults": {"data": {"seed": 1}}}}})
    with pytest.raises(ConfigError, match=r"tracks.captioner: sets \['data'\], which every track shares"):
        load_config(write(tmp_path, bad), "local", track="captioner")
    with pytest.raises(ConfigError, match="no track 'vqa'; the file defines \\['main', 'captioner'\\]"):
        load_config(write(tmp_path, TRACKED), "local", track="vqa")


def test_ablations_must_name_defined_stages(tmp_path):
    bad = deep_merge(BASE, {"defaults": {"train": {"stages": [{"name": "sar"}],
                                                   "ablations": [{"name": "x", "stages": ["optical"]}]}}})
    with pytest.raises(ConfigError, match="ablation 'x' names stages \\['optical'\\]"):
        load_config(write(tmp_path, bad), "local")
    twice = deep_merge(BASE, {"defaults": {"train": {"stages": [{"name": "sar"}, {"name": "sar"}]}}})
    with pytest.raises(ConfigError, match="train.stages names repeat"):
        load_config(write(tmp_path, twice), "local")


def test_configure_track_picks_a_track_and_applies_run_overrides(tmp_path):
    tracks = load_tracks(write(tmp_path, TRACKED), "local")
    bundle = tracks_json(tracks)
    assert configure_track(bundle, "captioner") == tracks["captioner"]
    tuned = configure_track(bundle, "main", ["main:train.epochs=5", "captioner:train.epochs=1", "train.lr=0.2"])
    assert (tuned.train.epochs, tuned.train.lr) == (5, 0.2)
    with pytest.raises(ConfigError, match="config_json has no track 'x'"):
        configure_track(bundle, "x")
    with pytest.raises(ConfigError, match="train.lr"):
        configure_track(bundle, "captioner", ["train.lr=-1"])


def test_a_written_track_config_loads_back_equal(tmp_path):
    captioner = load_tracks(write(tmp_path, TRACKED), "cluster")["captioner"]
    path = write_config_file(captioner, tmp_path / "out" / "config.yaml")
    assert load_config(path, "cluster", track="captioner") == captioner
