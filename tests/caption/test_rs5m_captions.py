"""RS5M captions: top-k CoCa candidates, top-cap, the rotation-invariance pick, geo sentences, the sampler."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from rsvl.caption.geo_template import class_phrase, geo_sentence, geo_sentence_for, month_year, with_geo
from rsvl.caption.rotation import common_crop, rotated_copies, rotation_scores, stability
from rsvl.caption.rs5m import (
    SSL_CAP,
    TOP_CAP,
    CaptionVariantSampler,
    Rs5mCaptions,
    caption_variant,
    choose,
    rs5m_captions,
    ssl_cap,
    ssl_index,
    top_cap,
)
from rsvl.caption.topk import Candidate, CocaTopK, sequence_log_probs
from rsvl.data.countries import country_at, country_boxes, find_country, parse_country_table, relative_location
from rsvl.data.dataset import ManifestDataset
from rsvl.data.store import DatasetWriter
from rsvl.errors import DataError, ModelError
from rsvl.models import build_model

SOT, EOT = 49406, 49407

# --- a deterministic CLIP-like model: four linear image features, one fixed vector per caption ---

SIZE = 8


def feature_masks(size: int = SIZE) -> np.ndarray:
    """(4, S, S) weights: whole-image mean, central-square mean, top minus bottom, left minus right."""
    half, quarter = size // 2, size // 4
    whole = np.full((size, size), 1 / size**2)
    centre = np.zeros((size, size))
    centre[quarter:size - quarter, quarter:size - quarter] = 1 / half**2
    top_bottom = np.zeros((size, size))
    top_bottom[:half], top_bottom[half:] = 1 / (half * size), -1 / (half * size)
    return np.stack([whole, centre, top_bottom, top_bottom.T])


class LinearScenes(nn.Module):
    """``encode_image``: the four features of the channel mean; ``encode_text``: a vector per caption.

    Under a 90° turn the first two features stay and the last two swap (with a sign), so the
    image vector keeps its length: a caption pointing along the central-square feature scores the
    same for every right-angle rotation, one with a top-minus-bottom part does not.
    """

    def __init__(self, captions: dict[str, list[float]]) -> None:
        super().__init__()
        weight = torch.tensor(feature_masks(), dtype=torch.float64).flatten(1).T  # (S*S, 4)
        self.register_buffer("weight", weight)
        self.texts = list(captions)
        self.register_buffer("table", torch.tensor(list(captions.values()), dtype=torch.float64))
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return images.double().mean(dim=1).flatten(1) @ self.weight

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens]

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([self.texts.index(text) for text in texts])


SCENE_CAPTIONS = {
    "a dark square amid bright fields": [0.0, 1.0, 0.0, 0.0],  # central feature only: rotation-invariant
    "bright fields with the brightest at the top": [1.0, 0.0, 0.3, 0.0],  # higher mean, not invariant
    "the top half is brighter": [0.0, 0.0, 1.0, 0.0],
}


def scene() -> np.ndarray:
    """An 8×8 grey scene: bright top half, dark central square."""
    image = np.ones((SIZE, SIZE))
    image[:SIZE // 2] += 1.0
    image[2:6, 2:6] = 0.2
    return image


def reference_cosines(image: np.ndarray, captions: dict[str, list[float]], turns=range(4)) -> np.ndarray:
    """(rotations, captions) cosines in float64 with numpy's rot90 and explicit feature sums."""
    masks = feature_masks()
    rows = []
    for turn in turns:
        turned = np.rot90(image, turn)
        features = np.array([(mask * turned).sum() for mask in masks])
        rows.append([features @ np.array(vector) / (np.linalg.norm(features) * np.linalg.norm(vector))
                     for vector in captions.values()])
    return np.array(rows)


def test_rotation_scores_match_a_float64_reference():
    model = LinearScenes(SCENE_CAPTIONS)
    images = torch.tensor(scene(), dtype=torch.float32).expand(1, 3, SIZE, SIZE)
    scores = rotation_scores(model, model.tokenize, images, [list(SCENE_CAPTIONS)])
    assert scores[0].shape == (4, 3)
    np.testing.assert_allclose(scores[0], reference_cosines(scene(), SCENE_CAPTIONS), atol=1e-6)


def test_the_rotation_invariant_caption_is_ssl_cap_though_another_scores_higher_on_average():
    model = LinearScenes(SCENE_CAPTIONS)
    invariant, leaning, top_half = SCENE_CAPTIONS
    candidates = [Candidate(leaning, -1.0, 6), Candidate(top_half, -2.0, 5), Candidate(invariant, -3.0, 7)]
    images = torch.tensor(scene(), dtype=torch.float32).expand(1, 3, SIZE, SIZE)
    scores = rotation_scores(model, model.tokenize, images, [[c.text for c in candidates]])[0]
    reference = reference_cosines(scene(), {c.text: SCENE_CAPTIONS[c.text] for c in candidates})
    # the premise: the invariant caption is flat over rotations, the leaning one is higher on average
    assert np.ptp(reference[:, 2]) < 1e-12 and np.ptp(reference[:, 0]) > 0.1
    assert reference[:, 0].mean() > reference[:, 2].mean() + 0.5
    picked = choose("s0", candidates, scores)
    assert picked.ssl_cap == invariant and picked.top_cap == leaning
    assert ssl_cap(candidates, stability(scores)).text == invariant
    np.testing.assert_allclose(picked.stability.spread, reference.std(axis=0), atol=1e-6)
    np.testing.assert_allclose(picked.stability.mean, reference.mean(axis=0), atol=1e-6)


def test_equally_stable_captions_go_to_the_higher_mean_then_to_the_generator():
    steady_low, steady_high, shaky = [0.3] * 4, [0.5] * 4, [0.9, 0.1, 0.9, 0.1]
    assert ssl_index(stability(np.array([steady_low, steady_high, shaky]).T)) == 1
    assert ssl_index(stability(np.array([steady_high, steady_low, shaky]).T)) == 0
    # within the tolerance the spreads tie and the mean decides
    assert ssl_index(stability(np.array([[0.3, 0.3 + 2e-7, 0.3, 0.3], steady_high]).T)) == 1
    # equal spread and mean: the first candidate (the generator's preference) wins
    assert ssl_index(stability(np.array([steady_high, steady_high]).T)) == 0


def test_std_and_range_can_disagree_and_both_are_computed_exactly():
    lone_jump, two_jumps = [0.0, 0.0, 0.0, 0.4], [0.0, 0.35, 0.0, 0.35]
    scores = np.array([lone_jump, two_jumps]).T
    by_std, by_range = stability(scores, "std"), stability(scores, "range")
    np.testing.assert_allclose(by_std.spread, [math.sqrt(0.03), 0.175])
    np.testing.assert_allclose(by_range.spread, [0.4, 0.35])
    assert ssl_index(by_std) == 0 and ssl_index(by_range) == 1
    with pytest.raises(ValueError, match="unknown spread 'mad'"):
        stability(scores, "mad")


def test_top_cap_is_the_highest_generator_score_first_listed_on_ties():
    candidates = [Candidate("b", -4.5, 3), Candidate("a", -1.25, 9), Candidate("c", -1.25, 2), Candidate("d", -7.0, 4)]
    assert top_cap(candidates).text == "a"
    with pytest.raises(ValueError, match="no candidate captions"):
        top_cap([])
    with pytest.raises(ModelError, match="sample 'x'.*wrote no caption"):
        choose("x", [], np.zeros((4, 0)))


def test_right_angle_copies_are_exact_rotations():
    images = torch.randn(2, 3, 5, 5)
    copies = rotated_copies(images, (0, 90, 180, 270, -90))
    for i, turns in enumerate((0, 1, 2, 3, 3)):
        assert torch.equal(copies[:, i], torch.from_numpy(np.rot90(images.numpy(), turns, axes=(-2, -1)).copy()))
    with pytest.raises(ValueError, match="square"):
        rotated_copies(torch.zeros(1, 3, 4, 6))
    with pytest.raises(ValueError, match="empty"):
        rotated_copies(images, ())


def test_other_angles_crop_every_copy_to_the_square_inside_all_rotations():
    # 32 / (cos 45° + sin 45°) = 22.6; 100 / (cos 30° + sin 30°) = 73.2
    assert common_crop(32, (0, 45)) == 22 and common_crop(100, (30,)) == 73 and common_crop(32, (0, 90)) == 32
    flat = torch.ones(1, 3, 32, 32)
    copies = rotated_copies(flat, (0, 45, 90))
    assert copies.shape == (1, 3, 3, 32, 32)
    # no empty corner survives the crop (a bare 45° turn leaves zeros there)
    assert torch.allclose(copies, torch.ones_like(copies), atol=1e-5)


# --- geo sentences ---

def test_geo_sentence_uses_only_the_parts_present():
    assert geo_sentence("June 2018", "Austria", "coniferous forest", "south-west") == (
        "a satellite image of coniferous forest in the south-west of Austria, taken in June 2018.")
    assert geo_sentence("June 2018", "Austria", "coniferous forest") == (
        "a satellite image of coniferous forest in Austria, taken in June 2018.")
    assert geo_sentence(country="Austria", relative_location="centre") == "a satellite image in the centre of Austria."
    assert geo_sentence(month_year="June 2018") == "a satellite image, taken in June 2018."
    assert geo_sentence(class_label="pastures") == "a satellite image of pastures."
    assert geo_sentence("March 2020", class_label="airport", subject="an aerial image") == (
        "an aerial image of airport, taken in March 2020.")
    assert geo_sentence() == "" and geo_sentence(" ", "", None) == ""
    with pytest.raises(ValueError, match="'north' needs a country"):
        geo_sentence(relative_location="north")


def test_the_geo_sentence_goes_in_front_of_the_caption_only_when_there_is_one():
    assert with_geo("a road crosses fields", "a satellite image in Austria.") == (
        "a satellite image in Austria. a road crosses fields")
    assert with_geo("a road crosses fields", "") == "a road crosses fields"


def test_month_year_from_iso_timestamps():
    assert month_year("2019-03-14T10:12:00Z") == "March 2019"
    assert month_year("2017-12-01") == "December 2017"
    assert month_year("2020-02-29T23:59:59+02:00") == "February 2020"
    with pytest.raises(DataError, match="'14/03/2019' is not an ISO 8601"):
        month_year("14/03/2019")
    assert class_phrase("Coniferous_forest") == "coniferous forest"
    assert class_phrase(["Pastures", "Mixed  forest", "Water bodies"]) == "pastures, mixed forest and water bodies"


# Box cells from the packaged table, used by hand below:
#   Finland  20.65..31.52 E, 59.85..70.16 N     Ireland  -9.98..-6.03 E, 51.67..55.13 N
#   Portugal -9.53..-6.39 E, 36.84..42.28 N     Norway    4.99..31.29 E, 58.08..70.92 N
KNOWN_PLACES = [
    # (name, lat, lon, country, u = lon third, v = lat third, relative location)
    ("Helsinki", 60.17, 24.94, "Finland", (24.94 - 20.65) / 10.87, (60.17 - 59.85) / 10.31, "south"),
    ("Dublin", 53.35, -6.26, "Ireland", (-6.26 + 9.98) / 3.95, (53.35 - 51.67) / 3.46, "east"),
    ("Lisbon", 38.72, -9.14, "Portugal", (-9.14 + 9.53) / 3.14, (38.72 - 36.84) / 5.44, "west"),
    ("Oulu", 65.01, 25.47, "Finland", (25.47 - 20.65) / 10.87, (65.01 - 59.85) / 10.31, "centre"),
    ("Tromsø", 69.65, 18.96, "Norway", (18.96 - 4.99) / 26.3, (69.65 - 58.08) / 12.84, "north"),
]


@pytest.mark.parametrize(("name", "lat", "lon", "country", "u", "v", "expected"), KNOWN_PLACES)
def test_relative_location_of_known_places(name, lat, lon, country, u, v, expected):
    west_east = "west" if u < 1 / 3 else "east" if u > 2 / 3 else ""
    south_north = "south" if v < 1 / 3 else "north" if v > 2 / 3 else ""
    assert ("-".join(p for p in (south_north, west_east) if p) or "centre") == expected  # the hand cells agree
    box = country_at(lat, lon)
    assert box is not None and box.name == country
    assert relative_location(lat, lon, box) == expected


def test_grid_cells_corners_and_cuts():
    austria = find_country("AT")
    assert austria is not None and austria.name == "Austria" and find_country("austria") == austria
    width, height = austria.lon_max - austria.lon_min, austria.lat_max - austria.lat_min

    def at(u: float, v: float) -> str | None:
        return relative_location(austria.lat_min + v * height, austria.lon_min + u * width, austria)

    assert at(0.05, 0.95) == "north-west" and at(0.95, 0.05) == "south-east" and at(0.5, 0.5) == "centre"
    assert at(0.95, 0.95) == "north-east" and at(0.05, 0.05) == "south-west"
    assert at(0.5, 0.999) == "north" and at(0.999, 0.5) == "east"
    assert relative_location(austria.lat_min - 0.5, 12.0, austria) is None  # outside the box


def test_country_at_takes_the_smallest_box_and_none_at_sea():
    # Helsinki is also inside Norway's box; Luxembourg city inside Belgium's, France's and Germany's
    assert find_country("Norway").contains(60.17, 24.94)
    assert country_at(49.61, 6.13).name == "Luxembourg"
    assert country_at(45.0, -20.0) is None  # the Atlantic
    with pytest.raises(DataError, match="not a WGS 84 position"):
        country_at(95.0, 10.0)
    assert len(country_boxes()) == 45 and len({box.iso2 for box in country_boxes()}) == 45


def test_country_table_errors_name_the_line_and_the_rule():
    header = "iso2,country,lon_min,lat_min,lon_max,lat_max\n"
    with pytest.raises(DataError, match=r"boxes.csv: missing columns \['lat_max'\]"):
        parse_country_table("iso2,country,lon_min,lat_min,lon_max\n", "boxes.csv")
    with pytest.raises(DataError, match=r"boxes.csv:3: 'AT' is listed twice"):
        parse_country_table(header + "AT,Austria,9,46,17,49\nAT,Osterreich,9,46,17,49\n", "boxes.csv")
    with pytest.raises(DataError, match=r"boxes.csv:2: box .* needs"):
        parse_country_table(header + "XX,Nowhere,9,95,17,99\n", "boxes.csv")
    with pytest.raises(DataError, match=r"boxes.csv:2: box coordinates must be numbers"):
        parse_country_table(header + "XX,Nowhere,nine,46,17,49\n", "boxes.csv")


def test_geo_sentence_of_manifest_rows():
    helsinki = {"sample_id": "s1", "lat": 60.17, "lon": 24.94, "timestamp": "2019-03-14T10:12:00+00:00",
                "label": "Coniferous_forest", "labels": None}
    assert geo_sentence_for(helsinki) == (
        "a satellite image of coniferous forest in the south of Finland, taken in March 2019.")
    lisbon = {"sample_id": "s2", "lat": 38.72, "lon": -9.14, "country": "PT", "timestamp": None,
              "label": None, "labels": ["Pastures", "Mixed forest"]}
    assert geo_sentence_for(lisbon) == "a satellite image of pastures and mixed forest in the west of Portugal."
    at_sea = {"sample_id": "s3", "lat": 45.0, "lon": -20.0, "timestamp": "2018-07-02"}
    assert geo_sentence_for(at_sea) == "a satellite image, taken in July 2018."
    bare = {"sample_id": "s4", "lat": float("nan"), "lon": float("nan"), "timestamp": None, "label": None,
            "labels": np.array([], dtype=object)}
    assert geo_sentence_for(bare) == ""
    with pytest.raises(DataError, match="sample 's5': has lat but not lon"):
        geo_sentence_for({"sample_id": "s5", "lat": 50.0, "lon": None})
    with pytest.raises(DataError, match="sample 's6': timestamp 'yesterday'"):
        geo_sentence_for({"sample_id": "s6", "timestamp": "yesterday"})


# --- the training sampler ---

def test_variant_draws_are_reproducible_and_half_and_half():
    draws = [caption_variant(7, 3, index) for index in range(10_000)]
    sampler = CaptionVariantSampler(seed=7)
    sampler.set_epoch(3)
    assert [sampler.variant(i) for i in range(10_000)] == draws == [caption_variant(7, 3, i) for i in range(10_000)]
    # the documented rule, computed here: rng([seed, epoch, index, 5]).random() < 0.5 picks top-cap
    expected_top = sum(np.random.default_rng([7, 3, i, 5]).random() < 0.5 for i in range(10_000))
    assert draws.count(TOP_CAP) == expected_top
    assert abs(expected_top - 5_000) < 4 * math.sqrt(10_000 * 0.25)  # within four standard deviations
    assert set(draws) == {TOP_CAP, SSL_CAP}
    assert [caption_variant(7, 4, i) for i in range(200)] != draws[:200]  # a new epoch draws afresh
    assert {caption_variant(1, 0, i, p_top=1.0) for i in range(50)} == {TOP_CAP}
    with pytest.raises(ValueError, match="p_top"):
        caption_variant(0, 0, 0, p_top=1.5)


def test_sampler_follows_the_epoch_and_puts_the_geo_sentence_first():
    captions = Rs5mCaptions("s0", (Candidate("top", -1.0, 2), Candidate("steady", -2.0, 2)),
                            stability(np.zeros((4, 2))), "top", "steady", "a satellite image in Austria.")
    sampler = CaptionVariantSampler(seed=11)
    sampler.set_epoch(2)
    for index in range(20):
        variant = caption_variant(11, 2, index)
        assert sampler.variant(index) == variant
        assert sampler.caption(index, captions) == ("a satellite image in Austria. "
                                                    + ("top" if variant == TOP_CAP else "steady"))
    with pytest.raises(ValueError, match="unknown caption variant"):
        captions.caption("best")


# --- top-k captions of the tiny CoCa ---

@pytest.fixture(scope="module")
def coca():
    torch.manual_seed(0)
    model, _, preprocess, tokenizer = build_model("rsvl-tiny-coca")
    return model.eval(), preprocess, tokenizer


def stepwise_log_prob(model, image: torch.Tensor, tokens) -> float:
    """Σ log p of ``tokens`` + end-of-text, one decoder call per prefix, in float64."""
    sequence = [SOT, *tokens, EOT]
    total = 0.0
    with torch.no_grad():
        for position in range(1, len(sequence)):
            prefix = torch.tensor([sequence[:position]])
            logits = model(image[None], prefix, output_labels=False)["logits"][0, -1].double()
            total += float(torch.log_softmax(logits, dim=-1)[sequence[position]])
    return total


def test_top_k_returns_k_distinct_captions_sorted_by_their_true_log_probability(coca):
    model, _, tokenizer = coca
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    found = CocaTopK(model, tokenizer, beams=6, seq_len=8)(images, 5)
    assert len(found) == 2
    for image, candidates in zip(images, found):
        texts = [c.text for c in candidates]
        assert len(candidates) == 5 and len(set(texts)) == 5 and all(texts)
        assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
        for candidate in candidates:
            assert candidate.text == " ".join(tokenizer.decode(list(candidate.tokens)).split())
            assert candidate.length == len(candidate.tokens) + 1 and 4 <= len(candidate.tokens) <= 6
            assert candidate.score == pytest.approx(stepwise_log_prob(model, image, candidate.tokens), abs=1e-3)
    assert model.training is False


def test_one_token_beams_are_the_best_first_tokens_ranked_with_their_ending(coca):
    # seq_len 3 = start, one token, end: the beam keeps the 4 likeliest first tokens and must then end
    model, _, tokenizer = coca
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    found = CocaTopK(model, tokenizer, beams=4, seq_len=3, min_tokens=1)(image, 3)[0]
    with torch.no_grad():
        logits = model(image, torch.tensor([[SOT]]), output_labels=False)["logits"][0, -1]
        first = torch.log_softmax(logits.double(), dim=-1)
    first[EOT] = -math.inf
    best: dict[str, float] = {}
    for token in first.topk(4).indices.tolist():
        text = " ".join(tokenizer.decode([token]).split())
        score = stepwise_log_prob(model, image[0], [token])
        if text and score > best.get(text, -math.inf):
            best[text] = score
    expected = sorted(best.items(), key=lambda item: -item[1])[:3]
    assert [c.text for c in found] == [text for text, _ in expected]
    assert [c.score for c in found] == pytest.approx([score for _, score in expected], abs=1e-4)


def test_end_of_text_waits_for_min_tokens_and_the_search_stops_once_settled(coca):
    model, _, tokenizer = coca
    calls = []

    def favour_the_end(module, args, output):
        calls.append(1)
        boosted = output.clone()
        boosted[..., EOT] += 50.0
        return boosted

    handle = model.text_decoder.register_forward_hook(favour_the_end)
    try:
        found = CocaTopK(model, tokenizer, beams=4, seq_len=12, min_tokens=3)(torch.zeros(1, 3, 32, 32), 3)[0]
    finally:
        handle.remove()
    assert len(found) == 3 and all(len(c.tokens) == 3 for c in found)
    assert len(calls) == 4  # steps after 0, 1, 2, 3 tokens; not the 11 steps seq_len allows


def test_sequence_log_probs_pads_captions_of_different_lengths(coca):
    model, _, tokenizer = coca
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    captions = [[320, 1125], [320, 1125, 539, 1234, 2677], [0, 0, 530]]  # 0 is a real token ("!"), also the pad id
    scores = sequence_log_probs(model, images, captions, tokenizer)
    for image, tokens, score in zip(images, captions, scores.tolist()):
        assert score == pytest.approx(stepwise_log_prob(model, image, tokens), abs=1e-3)


def test_top_k_refuses_bad_settings(coca):
    model, _, tokenizer = coca
    with pytest.raises(ValueError, match="k=7 captions need"):
        CocaTopK(model, tokenizer, beams=5)(torch.zeros(1, 3, 32, 32), 7)
    with pytest.raises(ValueError, match="CoCa model"):
        CocaTopK(LinearScenes(SCENE_CAPTIONS), tokenizer)
    with pytest.raises(ValueError, match="seq_len 40"):
        CocaTopK(model, tokenizer, seq_len=40)


# --- the whole per-image construction over a dataset ---

def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_rs5m_captions_over_a_dataset(tmp_path, coca):
    model, preprocess, tokenizer = coca
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "set", name="set", kind="classification", adapter="test", source="rng") as writer:
        for i in range(3):
            image = writer.write_bytes(png(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)), f"s{i}.png")
            meta = ({"lat": 53.35, "lon": -6.26, "timestamp": "2017-06-20T11:00:00Z", "label": "Pastures"}
                    if i == 1 else {})
            writer.add_row(sample_id=f"s{i}", split="train", modality="optical", bands=3, image=image, **meta)
    dataset = ManifestDataset(tmp_path / "set")
    out = rs5m_captions(CocaTopK(model, tokenizer, beams=5, seq_len=7), preprocess, model, preprocess, tokenizer,
                        dataset, k=3, batch_size=2)
    assert list(out) == ["s0", "s1", "s2"]
    for i, (sample_id, chosen) in enumerate(out.items()):
        assert len(chosen.candidates) == 3 and chosen.top_cap == chosen.candidates[0].text
        pixels = preprocess(dataset[i]["image"])
        with torch.no_grad():
            turned = torch.stack([torch.rot90(pixels, turn, dims=(-2, -1)) for turn in range(4)])
            img = nn.functional.normalize(model.encode_image(turned), dim=-1)
            txt = nn.functional.normalize(model.encode_text(tokenizer([c.text for c in chosen.candidates])), dim=-1)
        cosines = (img @ txt.T).double().numpy()
        assert chosen.ssl_cap == chosen.candidates[int(np.argmin(cosines.std(axis=0)))].text
        record = chosen.as_dict()
        assert record["sample_id"] == sample_id and record[TOP_CAP] == chosen.top_cap
    assert out["s1"].geo == "a satellite image of pastures in the east of Ireland, taken in June 2017."
    assert out["s0"].geo == "" and out["s0"].caption(SSL_CAP) == out["s0"].ssl_cap
    assert out["s1"].caption(TOP_CAP) == out["s1"].geo + " " + out["s1"].top_cap
