"""Config loading: profiles merge over defaults, and a bad value fails naming file, field and rule."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml

from rsvl.config import (
    OVERLAY_REPLACES,
    PAPERS,
    RunConfig,
    apply_overrides,
    configure_track,
    deep_merge,
    explain,
    format_explain,
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
    with pytest.raises(ConfigError, match=r"tracks.captioner.defaults: sets \['data'\], which every track shares"):
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


def test_two_tracks_may_not_share_a_registry_entry(tmp_path):
    inherits = deep_merge(TRACKED, {"tracks": {"captioner": {"defaults": {"registry": {"model_name": "clip"}}}}})
    with pytest.raises(ConfigError, match="tracks 'main' and 'captioner' both register as registry.model_name 'clip'"):
        load_tracks(write(tmp_path, inherits), "local")


@pytest.mark.parametrize(("tracks", "message"), [
    ({"main": {"defaults": {"train": {"epochs": 1}}}}, "tracks.main: 'main' is the paper's own sections"),
    ("captioner", "tracks: must be a mapping, got str 'captioner'"),
    ({"captioner": {"profiles": ["local"]}}, r"tracks.captioner.profiles: must be a mapping, got list \['local'\]"),
    ({"captioner": {"defaults": "x"}}, "tracks.captioner.defaults: must be a mapping, got str"),
    ({"captioner": {"profiles": {"local": 3}}}, "tracks.captioner.profiles.local: must be a mapping, got int"),
    ({"captioner": {"profiles": {"clustr": {}}}}, r"tracks.captioner.profiles: unknown profiles \['clustr'\]"),
    ({"captioner": {"gate": {}}}, "tracks.captioner: a track holds only 'defaults' and 'profiles'"),
])
def test_a_malformed_tracks_section_names_file_and_key(tmp_path, tracks, message):
    path = write(tmp_path, {**BASE, "tracks": tracks})
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path, "local")  # checked whichever track is loaded
    assert str(path) in str(err.value)


@pytest.mark.parametrize("layer", [{"defaults": {"train": {"dataset": "default/optical"}}},
                                   {"profiles": {"cluster": {"train": {"image_column": "s1"}}}}])
def test_a_track_may_not_train_on_other_data_than_the_pipeline_gives_it(tmp_path, layer):
    bad = deep_merge(TRACKED, {"tracks": {"captioner": layer}})
    with pytest.raises(ConfigError, match=r"tracks.captioner.(defaults|profiles.cluster): sets \['train.(dataset"
                                          r"|image_column)'\], which every track shares"):
        load_config(write(tmp_path, bad), "local")
    with pytest.raises(ConfigError, match="shared by every track"):
        load_config(write(tmp_path, TRACKED), "local", ["captioner:train.image_column=s1"])
    assert load_config(write(tmp_path, TRACKED), "local", ["train.image_column=s1"], "captioner").train.image_column == "s1"


def test_a_gate_in_any_track_layer_replaces_the_papers(tmp_path):
    in_profile = deep_merge(BASE, {
        "defaults": {"gate": {"minimums": {"test.mR": 20.0}, "max_regression": {"test.i2t_r1": 5.0}}},
        "tracks": {"captioner": {"defaults": {"registry": {"model_name": "coca"}},
                                 "profiles": {"local": {"gate": {"minimums": {"test.BLEU_4": 0.05}}}}}},
    })
    local = load_config(write(tmp_path, in_profile), "local", track="captioner")
    assert local.gate.minimums == {"test.BLEU_4": 0.05} and local.gate.max_regression == {}
    cluster = load_config(write(tmp_path, in_profile), "cluster", track="captioner")
    assert cluster.gate.minimums == {"test.mR": 20.0}  # no gate in the track's cluster layer: the paper's
    both = deep_merge(in_profile, {"tracks": {"captioner": {"defaults": {"gate": {"max_regression": {"x": 1.0}}}}}})
    merged = load_config(write(tmp_path, both), "local", track="captioner").gate  # the track's layers merge
    assert merged.minimums == {"test.BLEU_4": 0.05} and merged.max_regression == {"x": 1.0}


def test_a_track_naming_a_model_replaces_the_papers_model_section(tmp_path):
    sized = deep_merge(TRACKED, {"profiles": {"local": {"model": {"pretrained": "packaged", "image_size": 96}}},
                                 "tracks": {"captioner": {"profiles": {"cluster": {"model": {"image_size": 64}}}}}})
    local = load_config(write(tmp_path, sized), "local", track="captioner")
    assert (local.model.name, local.model.pretrained, local.model.image_size) == ("tiny-coca", None, None)
    cluster = load_config(write(tmp_path, sized), "cluster", track="captioner")  # no model.name: merged
    assert (cluster.model.name, cluster.model.pretrained, cluster.model.image_size) == ("ViT-L-14", "openai", 64)


def test_the_sar_text_captioner_resolves_its_own_model(repo_root):
    path = repo_root / "pipelines" / "sar_text" / "config.yaml"
    local = load_tracks(path, "local")
    assert local["main"].model.image_size == 96
    assert local["captioner"].model.model_dump() == {
        "name": "rsvl-effnetlite0-coca", "pretrained": "packaged", "image_size": 96, "location": None}
    cluster = load_tracks(path, "cluster")["captioner"].model
    assert (cluster.name, cluster.pretrained, cluster.image_size) == (
        "coca_ViT-L-14", "mscoco_finetuned_laion2b_s13b_b90k", None)


@pytest.mark.parametrize("profile", ["local", "cluster"])
def test_every_sar_text_track_scores_its_untuned_base_beside_it(repo_root, profile):
    tracks = load_tracks(repo_root / "pipelines" / "sar_text" / "config.yaml", profile)
    assert {name: cfg.evaluate.compare_base for name, cfg in tracks.items()} == {"main": True, "captioner": True}
    assert [(a.name, a.budget) for a in tracks["main"].train.ablations] == [("sar_only", "progression"),
                                                                           ("sar_direct", "stages")]


def test_run_time_overrides_must_name_a_track_of_the_paper(tmp_path):
    tracks = load_tracks(write(tmp_path, TRACKED), "local")
    with pytest.raises(ConfigError, match="names track 'cpationer'"):
        apply_overrides(tracks["main"], ["cpationer:train.epochs=3"], list(tracks))
    with pytest.raises(ConfigError, match="names track 'cpationer'"):
        configure_track(tracks_json(tracks), "main", ["cpationer:train.epochs=3"])
    with pytest.raises(TypeError):
        apply_overrides(tracks["main"], ["cpationer:train.epochs=3"])  # type: ignore[call-arg]


STAGED = {"stages": [{"name": "optical", "dataset": "default/optical"}, {"name": "sar"}]}


@pytest.mark.parametrize(("ablation", "evaluate", "message"), [
    ("sar_test", {}, "may be neither an eval set name \\['sar_test'\\]"),
    ("candidate", {}, "'candidate' prefixes its metric keys"),
    ("champion", {}, "'champion' prefixes its metric keys"),
    ("base", {"compare_base": True}, "'base' prefixes its metric keys"),
])
def test_an_ablation_may_not_take_a_comparison_name_in_use(tmp_path, ablation, evaluate, message):
    sets = {"sets": [{"name": "sar_test", "dataset": "default/sar", "tasks": ["retrieval"]}], **evaluate}
    bad = deep_merge(BASE, {"defaults": {"train": {**STAGED, "ablations": [{"name": ablation, "stages": ["sar"]}]},
                                         "evaluate": sets}})
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, bad), "local")
    if ablation == "base":
        plain = deep_merge(bad, {"defaults": {"evaluate": {"compare_base": False}}})
        assert load_config(write(tmp_path, plain), "local").train.ablations[0].name == "base"


@pytest.mark.parametrize(("train", "message"), [
    ({"stages": [{"name": "sar-a"}]}, "train.stages.0.name: String should match pattern"),
    ({**STAGED, "ablations": [{"name": "sar-only", "stages": ["sar"]}]}, "train.ablations.0.name: String should match"),
    ({**STAGED, "ablations": [{"name": "twice", "stages": ["sar", "sar"]}]}, "ablation 'twice' repeats stages"),
    ({"stages": [{"name": "x", "dataset": "/data/default/optical"}]}, "must be a relative path under data.root"),
    ({"stages": [{"name": "x", "dataset": "default/../../etc"}]}, "must be a relative path under data.root"),
])
def test_stage_and_ablation_names_and_datasets_are_refused_before_any_work(tmp_path, train, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, deep_merge(BASE, {"defaults": {"train": train}})), "local")


def test_vqa_is_scored_on_a_split_it_was_not_fitted_on(tmp_path):
    same = deep_merge(BASE, {"defaults": {"vqa": {"train_split": "test", "test_split": "test"}}})
    with pytest.raises(ConfigError, match="vqa.train_split and vqa.test_split are both 'test'"):
        load_config(write(tmp_path, same), "local")
    apart = deep_merge(BASE, {"defaults": {"vqa": {"train_split": "val", "test_split": "test"}}})
    assert load_config(write(tmp_path, apart), "local").vqa.train_split == "val"


def test_a_run_time_override_may_not_change_the_compiled_steps(tmp_path):
    with_vqa = load_tracks(write(tmp_path, deep_merge(TRACKED, {"defaults": {"vqa": {"model": "linear_head"}}})),
                           "local")
    bundle = tracks_json(with_vqa)
    assert configure_track(bundle, "main", ["vqa.model=answer_ranker"]).vqa.model == "answer_ranker"
    with pytest.raises(ConfigError, match="remove the vqa section, but the pipeline's steps were fixed"):
        configure_track(bundle, "main", ["vqa=null"])
    with pytest.raises(ConfigError, match="add the vqa section"):
        configure_track(tracks_json(load_tracks(write(tmp_path, TRACKED), "local")), "main", ["vqa={}"])


def write_pair(tmp_path: Path, base: dict, paper: dict) -> Path:
    """``<tmp>/base.yaml`` and ``<tmp>/paper/config.yaml`` extending it; returns the paper file."""
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "paper").mkdir(exist_ok=True)
    path = tmp_path / "paper" / "config.yaml"
    path.write_text(yaml.safe_dump({"paper": "closp", "extends": "../base.yaml", **paper}))
    return path


LAYERED_BASE = {
    "defaults": {"train": {"epochs": 3, "lr": 1.0e-4, "batch_size": 16},
                 "gate": {"minimums": {"optical_test.mR": 20.0}, "max_regression": {"optical_test.i2t_r1": 5.0}}},
    "profiles": {"local": {"model": {"name": "tiny", "image_size": 96}, "train": {"lr": 1.0e-3}},
                 "cluster": {"model": {"name": "ViT-B-32", "pretrained": "openai"}, "train": {"use_gpu": True}}},
}


def test_a_paper_file_overlays_the_base_it_extends_and_replaces_its_gate_and_named_model(tmp_path):
    path = write_pair(tmp_path, LAYERED_BASE, {
        "defaults": {"train": {"epochs": 5}, "gate": {"minimums": {"sar_test.mR": 10.0}}},
        "profiles": {"cluster": {"model": {"name": "ViT-L-14"}}}})
    local = load_config(path, "local")
    # base defaults < base profile < paper defaults: lr from the base profile, epochs from the paper
    assert (local.train.epochs, local.train.lr, local.train.batch_size) == (5, 1.0e-3, 16)
    assert local.model.model_dump() == {"name": "tiny", "pretrained": None, "image_size": 96, "location": None}
    # the paper's gate replaces the base's: no optical_test rule survives
    assert local.gate.model_dump() == {"minimums": {"sar_test.mR": 10.0}, "min_improvement": {}, "max_regression": {}}
    cluster = load_config(path, "cluster")
    # naming a model replaces the base's model section: no inherited pretrained tag
    assert cluster.model.model_dump() == {"name": "ViT-L-14", "pretrained": None, "image_size": None, "location": None}
    assert cluster.train.use_gpu is True


def test_a_paper_without_its_own_profile_uses_the_base_profile_and_bad_bases_are_refused(tmp_path):
    path = write_pair(tmp_path, LAYERED_BASE, {"defaults": {"registry": {"model_name": "closp"}}})
    assert load_config(path, "cluster").model.name == "ViT-B-32"
    only_local = {**LAYERED_BASE, "profiles": {"local": LAYERED_BASE["profiles"]["local"]}}
    with pytest.raises(ConfigError, match=r"config.yaml: no profile 'cluster'; the file defines \['local'\]"):
        load_config(write_pair(tmp_path, only_local, {}), "cluster")
    with pytest.raises(ConfigError, match=r"base.yaml: a base config holds only defaults, profiles; got \['paper'\]"):
        load_config(write_pair(tmp_path, {**LAYERED_BASE, "paper": "closp"}, {}), "local")
    (tmp_path / "base.yaml").unlink()
    with pytest.raises(ConfigError, match=r"base.yaml: config file does not exist"):
        load_config(path, "local")


def test_explain_names_the_layer_behind_every_value(tmp_path):
    path = write_pair(tmp_path, LAYERED_BASE, {"defaults": {"train": {"epochs": 5}},
                                               "profiles": {"local": {"train": {"batch_size": 8}}}})
    rows = {key: (value, source) for key, value, source in explain(path, "local", ["train.seed=4"])}
    base, paper = tmp_path / "base.yaml", tmp_path / "paper" / "config.yaml"
    assert rows["train.lr"] == (1.0e-3, f"{base} profiles.local")
    assert rows["train.epochs"] == (5, f"{paper} defaults")
    assert rows["train.batch_size"] == (8, f"{paper} profiles.local")
    assert rows["train.seed"] == (4, "override")
    assert rows["gate.max_regression.optical_test.i2t_r1"] == (5.0, f"{base} defaults")
    assert rows["train.weight_decay"] == (0.1, "default")
    assert rows["model.pretrained"] == (None, "default")
    assert rows["paper"] == ("closp", f"{paper} paper") and rows["profile"] == ("local", "argument")
    # one row per leaf of the resolved config, in its field order
    cfg = load_config(path, "local", ["train.seed=4"])
    assert [key for key in rows][:4] == ["paper", "profile", "track", "data.source"]
    assert rows["evaluate.sets"] == ([], "default") and len(rows) == len(explain(path, "local"))
    assert format_explain(explain(path, "local")).splitlines()[0].endswith(f"<- {paper} paper")
    assert cfg.train.seed == 4


def test_a_bad_value_names_the_layer_that_set_it(tmp_path):
    path = write_pair(tmp_path, LAYERED_BASE, {"profiles": {"local": {"train": {"lr": -1.0}}}})
    with pytest.raises(ConfigError) as err:
        load_config(path, "local")
    assert f"train.lr: Input should be greater than 0 [got -1.0] (set by {path} profiles.local)" in str(err.value)
    staged = write_pair(tmp_path, deep_merge(LAYERED_BASE, {"defaults": {"train": {"stages": [{"name": "sar"}]}}}), {})
    with pytest.raises(ConfigError, match=r"^override: cannot merge train.stages: Cannot merge DictConfig with ListConfig"):
        load_config(staged, "local", ["train.stages.name=x"])


def test_committed_paper_configs_hold_only_what_differs_from_the_base(repo_root):
    base = yaml.safe_load((repo_root / "pipelines" / "base.yaml").read_text())

    def leaves(node, prefix=()):
        if isinstance(node, dict) and node:
            for key, value in node.items():
                yield from leaves(value, (*prefix, key))
        else:
            yield prefix, node

    def at(node, path):
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return "<unset>"
            node = node[part]
        return node

    for path in sorted((repo_root / "pipelines").glob("*/config.yaml")):
        paper = yaml.safe_load(path.read_text())
        assert paper["extends"] == "../base.yaml", path
        for profile in ("local", "cluster"):
            below = deep_merge(base["defaults"], base["profiles"][profile])
            own = deep_merge(paper.get("defaults") or {}, (paper.get("profiles") or {}).get(profile) or {})
            for section, key in OVERLAY_REPLACES.items():  # a section the paper replaces repeats nothing
                if section in own and (key is None or key in own[section]):
                    below.pop(section, None)
            repeated = [".".join(key) for key, value in leaves(own) if at(below, key) == value]
            assert repeated == [], f"{path} ({profile}) repeats the base's values for {repeated}"


def test_location_weights_are_laid_onto_the_named_eval_sets_and_unknown_names_refused(repo_root):
    from rsvl.config import EvaluateConfig

    sets = [{"name": "a", "dataset": "d", "tasks": ["ndcg"]}, {"name": "b", "dataset": "d", "tasks": ["ndcg"]}]
    cfg = EvaluateConfig.model_validate({"sets": sets, "location_weight": {"b": 0.5}})
    assert [(s.name, s.location_weight) for s in cfg.sets] == [("a", None), ("b", 0.5)]
    with pytest.raises(ValueError, match=r"names eval sets \['c'\]"):
        EvaluateConfig.model_validate({"sets": sets, "location_weight": {"c": 1.0}})
    # the closp geoclosp track weighs the crisis sets in both profiles, the main track none
    for profile in ("local", "cluster"):
        geo = load_config(repo_root / "pipelines" / "closp" / "config.yaml", profile, track="geoclosp")
        assert {s.name: s.location_weight for s in geo.evaluate.sets if s.location_weight} == {
            "crisis_s1": 1.0, "crisis_s2": 1.0}
    main = load_config(repo_root / "pipelines" / "closp" / "config.yaml", "local")
    assert all(s.location_weight is None for s in main.evaluate.sets)


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("paper: sar_text\ndefaults:\n  train:\n    epochs: 3\n    lr: 1.0e-4\n    epochs: 30\n"
                    "profiles: {local: {model: {name: tiny}}}\n")
    with pytest.raises(ConfigError, match=r"(?s)config\.yaml: not valid YAML.*duplicate key 'epochs' \(first on line 4\)"
                                          r".*line 6"):
        load_config(path)


def test_merge_keys_may_be_overridden_without_counting_as_duplicates(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("paper: sar_text\ndefaults:\n  train: &train {epochs: 3, lr: 1.0e-4}\n"
                    "profiles:\n  local:\n    model: {name: tiny}\n    train:\n      <<: *train\n      epochs: 5\n")
    assert load_config(path).train.epochs == 5


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    path = tmp_path / "config.yaml"
    path.write_text("paper: sar_text\n" + "\n".join(levels) + "\ndefaults: {train: {ablations: *a8}}\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: not valid YAML \(aliases expand it to more than 100000 nodes"):
        load_config(path)


@pytest.mark.parametrize(("field", "value", "ok"), [
    ("path", "/data/../etc/shadow", False), ("path", "../../etc", False), ("root", "/data/../tmp", False),
    ("root", "/tmp/data", True),  # a plain absolute root: a KubeRay run from a laptop copies it to the volume
    ("path", "/data/rsscn7", True), ("path", "/mnt/rsvl-shared/sets/a", True), ("path", "rsscn7/../other", True),
])
def test_cluster_data_paths_stay_under_the_mounted_volumes(tmp_path, field, value, ok):
    overrides = ["data.source=ingest", "data.format=coco", "data.path=/data/a", f"data.{field}={value}"]
    if ok:
        assert getattr(load_config(write(tmp_path, BASE), "cluster", overrides).data, field) == value
        return
    with pytest.raises(ConfigError, match=rf"data\.{field} '{value}' leaves the mounted volumes"):
        load_config(write(tmp_path, BASE), "cluster", overrides)
    assert getattr(load_config(write(tmp_path, BASE), "local", overrides).data, field) == value


def test_a_recursive_alias_is_refused_naming_its_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("paper: sar_text\ndefaults:\n  train:\n    ablations: &a [*a]\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: not valid YAML \(the node at line 4 holds an alias to itself"):
        load_config(path)
