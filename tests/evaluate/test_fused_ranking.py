"""A consumer's fused ranking (rsvl.evaluate.fused_ranking) against scores computed here from the tokens."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rsvl.data.dataset import ManifestDataset
from rsvl.data.generate import write_optical_scenes
from rsvl.evaluate.fused_ranking import fused_ranking, fused_scores
from rsvl.models import build_model, load_model, save_model
from rsvl.models.tokens import encode_with_tokens

QUERIES = ["a dense green forest", "a lake of blue water", "rows of houses with red roofs"]


def test_fused_ranking_of_a_saved_model_is_the_weighted_cosine_and_token_norm(tmp_path):
    write_optical_scenes(tmp_path / "optical", seed=0, per_class=2)
    pictures = [sample["image"] for sample in ManifestDataset(tmp_path / "optical")]
    torch.manual_seed(0)
    folder = save_model(build_model("rsvl-tiny", None, 3, None)[0], tmp_path / "model")
    model, _, preprocess, tokenizer = load_model(folder)
    scores = fused_scores(model, preprocess, tokenizer, pictures, QUERIES)
    # reference: one pass over all images and texts, the local term as an explicit einsum
    model.eval()
    img = encode_with_tokens(model, images=torch.stack([preprocess(p) for p in pictures]))
    txt = encode_with_tokens(model, text=tokenizer(QUERIES))
    cosine = F.normalize(txt["text_features"], dim=-1) @ F.normalize(img["image_features"], dim=-1).T
    local = torch.einsum("ald,bpd->ablp", F.normalize(txt["text_tokens"], dim=-1),
                         F.normalize(img["image_tokens"], dim=-1)).pow(2).sum((2, 3)).sqrt()
    torch.testing.assert_close(scores, 0.6 * cosine + 0.4 * local, rtol=1e-5, atol=1e-5)
    plain = fused_ranking(model, preprocess, tokenizer, pictures, QUERIES, sar_k=None)
    assert plain == torch.sort(0.6 * cosine + 0.4 * local, dim=1, descending=True, stable=True).indices.tolist()
    # SAR moves answers only inside each query's top k
    reranked = fused_ranking(model, preprocess, tokenizer, pictures, QUERIES, sar_k=4)
    for before, after in zip(plain, reranked):
        assert sorted(after[:4]) == sorted(before[:4]) and after[4:] == before[4:]
    # one query: no other query to reverse-rank against, so SAR keeps the fused order
    assert fused_ranking(model, preprocess, tokenizer, pictures, QUERIES[:1], sar_k=4) == plain[:1]
