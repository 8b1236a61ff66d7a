"""The registered captioners: nearest-neighbour caption transfer against a numpy reference, CoCa from a saved folder."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from rsvl.caption.captioners import CAPTIONERS, NearestCaptions, build_captioner
from rsvl.caption.topk import CocaTopK
from rsvl.config import RunConfig
from rsvl.data.dataset import ManifestDataset
from rsvl.data.store import DatasetWriter
from rsvl.errors import ConfigError, DataError
from rsvl.models import build_model, save_model
from rsvl.steps.curation_model import CurationModel

# per reference row: split and captions; rows share texts so the distinct-text rule is exercised
REFERENCE = [
    ("train", ["a dense forest", "green trees"]),
    ("train", ["green trees", "a lake", "open water"]),
    ("train", []),  # nothing to transfer
    ("train", ["a parking lot", "a dense forest"]),
    ("val", ["a validation caption"]),
    ("train", ["bare land"]),
]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, _, preprocess, tokenizer = build_model("rsvl-tiny")
    return model.eval(), preprocess, tokenizer


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A data root holding ``default/optical``: six reference rows, noise images of different colours."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    with DatasetWriter(root / "default" / "optical", name="ref", kind="captioning", adapter="test",
                       source="rng") as writer:
        for i, (split, captions) in enumerate(REFERENCE):
            pixels = (rng.integers(0, 80, (40, 40, 3)) + rng.integers(0, 170, 3)).astype(np.uint8)
            writer.add_row(sample_id=f"r{i}", split=split, modality="optical", bands=3, width=40, height=40,
                           image=writer.write_bytes(png(pixels), f"r{i}.png"), captions=captions)
    return root


def queries(preprocess) -> torch.Tensor:
    rng = np.random.default_rng(1)
    images = [torch.from_numpy(rng.integers(0, 255, (3, 40, 40)).astype(np.float32)) for _ in range(4)]
    return torch.stack([preprocess(image) for image in images])


def numpy_reference(model, preprocess, reference_dir, images: torch.Tensor, k: int) -> list[list[tuple[str, float]]]:
    """Embed each train row with captions alone, cosines in float64, then walk the ranking by hand."""
    rows = ManifestDataset(reference_dir, split="train")
    bank, texts = [], []
    with torch.no_grad():
        for index in range(len(rows)):
            sample = rows[index]
            if not sample.get("captions"):
                continue
            bank.append(model.encode_image(preprocess(sample["image"])[None])[0].double().numpy())
            texts.append(list(sample["captions"]))
        query = model.encode_image(images).double().numpy()
    bank = np.array(bank) / np.linalg.norm(bank, axis=1, keepdims=True)
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    expected = []
    for cosines in query @ bank.T:
        ranked = sorted(range(len(bank)), key=lambda j: -cosines[j])
        pairs = [(text, cosines[j]) for j in ranked for text in texts[j]]
        seen, picked = set(), []
        for text, score in pairs:
            if text not in seen:
                seen.add(text)
                picked.append((text, float(score)))
        expected.append(picked[:k])
    return expected


def cfg_for(root, **curation) -> RunConfig:
    return RunConfig.model_validate({"paper": "georsclip", "profile": "local", "model": {"name": "rsvl-tiny"},
                                     "data": {"root": str(root)}, "curation": curation})


@pytest.mark.parametrize("k", [1, 3, 5])
def test_nearest_captions_match_a_numpy_reference(tiny, root, k):
    model, preprocess, tokenizer = tiny
    scorer = CurationModel(model, preprocess, tokenizer, "test")
    captioner, captioner_preprocess = build_captioner(cfg_for(root, captions={"batch_size": 2}), scorer)
    assert isinstance(captioner, NearestCaptions) and captioner_preprocess is preprocess
    assert captioner.reference_ids == ["r0", "r1", "r3", "r5"]  # train rows with captions only
    images = queries(preprocess)
    found = captioner(images, k)
    expected = numpy_reference(model, preprocess, root / "default" / "optical", images, k)
    assert len(found) == len(expected) == 4
    for candidates, wanted in zip(found, expected):
        assert [c.text for c in candidates] == [text for text, _ in wanted]
        assert [c.score for c in candidates] == pytest.approx([score for _, score in wanted], abs=1e-5)
        assert "a validation caption" not in [c.text for c in candidates]


def test_nearest_embeds_the_references_once_and_a_reference_finds_its_own_captions(tiny, root):
    model, preprocess, _ = tiny
    reference = ManifestDataset(root / "default" / "optical", split="train")
    captioner = NearestCaptions(model, preprocess, reference, batch_size=4)
    first = captioner.embeddings()
    images = torch.stack([preprocess(reference[3]["image"])])  # r3 itself: nothing is excluded
    found = captioner(images, 2)[0]
    assert captioner.embeddings() is first
    assert [c.text for c in found] == ["a parking lot", "a dense forest"]
    assert found[0].score == pytest.approx(1.0, abs=1e-5) and found[0].score == found[1].score


def test_nearest_refuses_references_without_captions_and_bad_k(tiny, root, tmp_path):
    model, preprocess, tokenizer = tiny
    with DatasetWriter(tmp_path / "bare", name="bare", kind="classification", adapter="test", source="t") as writer:
        writer.add_row(sample_id="x", split="train", modality="optical", label="forest",
                       image=writer.write_bytes(png(np.zeros((8, 8, 3), np.uint8)), "x.png"))
    with pytest.raises(DataError, match="no reference row has a caption"):
        NearestCaptions(model, preprocess, ManifestDataset(tmp_path / "bare"))
    scorer = CurationModel(model, preprocess, tokenizer, "test")
    with pytest.raises(DataError, match="curation.captioner.reference 'default/none'.*not a dataset"):
        build_captioner(cfg_for(root, captioner={"reference": "default/none"}), scorer)
    captioner, _ = build_captioner(cfg_for(root), scorer)
    with pytest.raises(ValueError, match="k=0"):
        captioner(queries(preprocess), 0)


def test_coca_from_a_saved_folder_is_the_top_k_of_that_model(tmp_path, tiny):
    torch.manual_seed(3)
    coca, _, preprocess, tokenizer = build_model("rsvl-tiny-coca")
    folder = save_model(coca, tmp_path / "coca")
    settings = {"k": 2, "beams": 3, "seq_len": 6, "min_tokens": 1}
    cfg = cfg_for(tmp_path, captioner={"name": "coca", "model": {"name": "rsvl-tiny-coca", "pretrained": str(folder)}},
                  captions=settings)
    model, clip_preprocess, clip_tokenizer = tiny
    captioner, captioner_preprocess = build_captioner(cfg, CurationModel(model, clip_preprocess, clip_tokenizer, "t"))
    assert isinstance(captioner, CocaTopK)
    assert (captioner.beams, captioner.seq_len, captioner.min_tokens) == (3, 6, 1)
    images = torch.stack([captioner_preprocess(torch.full((3, 40, 40), float(v))) for v in (30, 200)])
    expected = CocaTopK(coca.eval(), tokenizer, beams=3, seq_len=6, min_tokens=1)(images, 2)
    assert [[(c.text, c.tokens) for c in row] for row in captioner(images, 2)] == \
        [[(c.text, c.tokens) for c in row] for row in expected]


def test_unknown_captioner_and_a_coca_that_is_not_one(tmp_path, tiny):
    model, preprocess, tokenizer = tiny
    scorer = CurationModel(model, preprocess, tokenizer, "t")
    with pytest.raises(ConfigError, match=r"'blip' is not a registered captioner; known: \['coca', 'nearest'\]"):
        build_captioner(cfg_for(tmp_path, captioner={"name": "blip"}), scorer)
    folder = save_model(model, tmp_path / "clip")
    cfg = cfg_for(tmp_path, captioner={"name": "coca", "model": {"name": "rsvl-tiny", "pretrained": str(folder)}})
    with pytest.raises(ConfigError, match="CoCa model"):
        build_captioner(cfg, scorer)
    assert sorted(CAPTIONERS) == ["coca", "nearest"]
