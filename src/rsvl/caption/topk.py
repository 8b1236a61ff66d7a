"""Several captions per image from a captioner, each with the generator's own score.

RS5M captions uncaptioned images with the top five captions of a captioning model. A captioner
here is anything that maps a batch of preprocessed images to, per image, up to ``k`` distinct
:class:`Candidate` captions sorted best first (:class:`TopKCaptioner`). :class:`CocaTopK` is the
one for the project's captioners (open_clip CoCa models, the SAR-TEXT track's ``coca`` models).

The score of a caption is its **sequence log-probability** under the captioner,
``log p(caption | image) = Σ_t log p(token_t | image, tokens before t)`` over the caption's tokens
and the closing end-of-text token (natural log, no length normalisation), so candidates of one
image compare directly and :func:`sequence_log_probs` recomputes any of them by teacher forcing.

:class:`CocaTopK` runs its own beam search rather than open_clip's ``CoCa.generate``: ``generate``
returns one sequence per image and its beam search ranks beams by summed raw logits, not
log-probabilities, so neither the k best sequences nor their probabilities come out of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import open_clip
import torch
from torch import nn

SOT_ID = 49406
"""open_clip's BPE start-of-text id, used when the tokenizer does not name its own."""
EOT_ID = 49407
"""open_clip's BPE end-of-text id, used when the tokenizer does not name its own."""


@dataclass(frozen=True)
class Candidate:
    """One generated caption.

    Attributes:
        text: The caption.
        score: Its sequence log-probability under the generator (higher is better).
        length: Tokens the score sums over (the caption's tokens and the end-of-text token).
        tokens: The caption's token ids without start and end-of-text tokens, where the
            captioner exposes them (``()`` otherwise).
    """

    text: str
    score: float
    length: int
    tokens: tuple[int, ...] = ()


class TopKCaptioner(Protocol):
    """A captioner that writes several scored captions per image."""

    def __call__(self, images: torch.Tensor, k: int) -> list[list[Candidate]]:
        """Caption a batch.

        Args:
            images: (N, C, H, W) images, preprocessed for the captioner.
            k: Most captions per image.

        Returns:
            Per image, up to ``k`` candidates with distinct texts, highest score first.
        """
        ...


def is_coca(model: nn.Module) -> bool:
    """Whether ``model`` is a CoCa-style captioner (``generate`` and a text decoder)."""
    return callable(getattr(model, "generate", None)) and hasattr(model, "text_decoder")


def _special_ids(tokenizer: Any) -> tuple[int, int]:
    return int(getattr(tokenizer, "sot_token_id", SOT_ID)), int(getattr(tokenizer, "eot_token_id", EOT_ID))


def _decode(tokenizer: Any, tokens: Sequence[int]) -> str:
    """Text of caption tokens (no end-of-text); a stray start token is dropped, as ``generate``'s output is."""
    base = tokenizer if callable(getattr(tokenizer, "decode", None)) else open_clip.tokenizer._tokenizer
    sot = _special_ids(tokenizer)[0]
    return " ".join(base.decode([t for t in tokens if t != sot]).split())


def _next_log_probs(model: nn.Module, text: torch.Tensor, latent: torch.Tensor, embs: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the token after each row of ``text`` (rows, vocabulary)."""
    # the image argument is unused when the encoded image is passed along
    logits = model(None, text, image_latent=latent, image_embs=embs, output_labels=False)["logits"][:, -1]
    return torch.log_softmax(logits.float(), dim=-1)


@torch.no_grad()
def sequence_log_probs(
    model: nn.Module,
    images: torch.Tensor,
    captions: Sequence[Sequence[int]],
    tokenizer: Any = None,
) -> torch.Tensor:
    """Teacher-forced sequence log-probability of given token sequences.

    Args:
        model: An open_clip CoCa.
        images: (N, C, H, W) preprocessed images, one per caption, on the model's device.
        captions: Per image, the caption's token ids without start and end-of-text tokens.
        tokenizer: The model's tokenizer (its ``sot_token_id``/``eot_token_id``; open_clip's by default).

    Returns:
        (N,) float tensor: ``Σ log p`` over each caption's tokens and the end-of-text token.

    Raises:
        ValueError: Images and captions differ in number, or a caption does not fit the decoder.
    """
    if len(captions) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(captions)} captions; one caption per image")
    sot, eot = _special_ids(tokenizer)
    pad = int(getattr(model, "pad_id", 0))
    rows = [[sot, *map(int, tokens), eot] for tokens in captions]
    width = max(len(row) for row in rows) - 1
    if width > model.context_length:
        raise ValueError(f"a caption of {width} tokens (start token included) exceeds the decoder's "
                         f"context length {model.context_length}")
    inputs = torch.full((len(rows), width), pad, dtype=torch.long, device=images.device)
    targets = torch.full((len(rows), width), pad, dtype=torch.long, device=images.device)
    for i, row in enumerate(rows):
        inputs[i, :len(row) - 1] = torch.tensor(row[:-1])
        targets[i, :len(row) - 1] = torch.tensor(row[1:])
    was_training = model.training
    model.eval()
    try:
        logits = model(images, inputs, output_labels=False)["logits"].float()
    finally:
        model.train(was_training)
    picked = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    lengths = torch.tensor([len(row) - 1 for row in rows], device=images.device)
    # right padding: positions at or past a row's length are not part of its caption
    keep = torch.arange(width, device=images.device).unsqueeze(0) < lengths.unsqueeze(1)
    return (picked * keep).sum(dim=1)


class CocaTopK:
    """Top-k captions of an open_clip CoCa by beam search over sequence log-probabilities.

    Each image keeps ``beams`` live partial captions. A step extends every live caption by every
    token; of the ``2 * beams`` best extensions, those ending in end-of-text become finished
    captions and the best others (up to ``beams``) stay live. End-of-text is not allowed before
    ``min_tokens`` caption tokens, and is forced when the caption reaches ``seq_len`` tokens
    (start token included). An image stops early once it has ``k`` distinct finished texts and no
    live caption scores above the k-th of them (log-probabilities only fall as a caption grows).
    Finished captions with the same text (different token paths) count once, at their best score;
    captions that decode to empty text are dropped.

    Args:
        model: An open_clip CoCa (the SAR-TEXT track's captioner or any ``coca`` model).
        tokenizer: Its tokenizer (``decode``, ``sot_token_id``, ``eot_token_id``).
        beams: Live captions per image; at least ``k`` at call time.
        seq_len: Longest caption in tokens, start and end tokens included.
        min_tokens: Fewest caption tokens before end-of-text (open_clip's ``min_seq_len=5``
            counts the start token, so its default equals 4 here).

    Raises:
        ValueError: The model is not a CoCa, or the lengths do not fit its decoder.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, *, beams: int = 10, seq_len: int = 30,
                 min_tokens: int = 4) -> None:
        if not is_coca(model):
            raise ValueError(f"top-k captions need a CoCa model with a text decoder; {type(model).__name__} has none")
        if not 2 <= seq_len <= model.context_length:
            raise ValueError(f"seq_len {seq_len} must be in [2, {model.context_length}] (the decoder's context)")
        if not 0 <= min_tokens <= seq_len - 2:
            raise ValueError(f"min_tokens {min_tokens} must be in [0, seq_len - 2 = {seq_len - 2}]")
        self.model, self.tokenizer = model, tokenizer
        self.beams, self.seq_len, self.min_tokens = beams, seq_len, min_tokens
        self.sot, self.eot = _special_ids(tokenizer)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, k: int) -> list[list[Candidate]]:
        """Caption a batch (see :class:`TopKCaptioner`).

        Raises:
            ValueError: ``k`` is below 1 or above ``beams``.
        """
        if not 1 <= k <= self.beams:
            raise ValueError(f"k={k} captions need 1 <= k <= beams={self.beams}")
        was_training = self.model.training
        self.model.eval()
        try:
            finished = self._search(images.to(next(self.model.parameters()).device), k)
        finally:
            self.model.train(was_training)
        return [self._best(found, k) for found in finished]

    def _search(self, images: torch.Tensor, k: int) -> list[dict[tuple[int, ...], float]]:
        """Beam search; per image, finished caption tokens → sequence log-probability."""
        model, width = self.model, self.beams
        count = images.shape[0]
        encoded = model(images)
        latent = encoded["image_features"].repeat_interleave(width, 0)
        embs = encoded["image_embs"].repeat_interleave(width, 0)
        text = torch.full((count * width, 1), self.sot, dtype=torch.long, device=images.device)
        scores = torch.full((count, width), float("-inf"), device=images.device)
        scores[:, 0] = 0.0  # one start beam per image; the others would repeat it
        finished: list[dict[tuple[int, ...], float]] = [{} for _ in range(count)]
        texts: list[dict[str, float]] = [{} for _ in range(count)]
        for length in range(1, self.seq_len):  # ``length`` tokens so far, start token included
            log_probs = _next_log_probs(model, text, latent, embs)
            vocab = log_probs.shape[-1]
            total = scores.unsqueeze(-1) + log_probs.view(count, width, vocab)
            allowed = total.clone()
            if length - 1 < self.min_tokens:
                allowed[..., self.eot] = float("-inf")
            if length == self.seq_len - 1:  # the next token is the last that fits: it must end the caption
                allowed[..., :self.eot] = float("-inf")
                allowed[..., self.eot + 1:] = float("-inf")
            top_scores, top_index = allowed.view(count, -1).topk(2 * width, dim=1)
            parents = torch.zeros(count * width, dtype=torch.long, device=images.device)
            tokens = torch.full((count * width,), self.eot, dtype=torch.long, device=images.device)
            new_scores = torch.full((count, width), float("-inf"), device=images.device)
            for image in range(count):
                live = 0
                for score, index in zip(top_scores[image].tolist(), top_index[image].tolist()):
                    if score == float("-inf") or live == width:
                        break
                    beam, token = divmod(index, vocab)
                    row = image * width + beam
                    if token == self.eot:
                        caption = tuple(text[row, 1:].tolist())
                        finished[image][caption] = score
                        self._note_text(texts[image], caption, score)
                        continue
                    parents[image * width + live], tokens[image * width + live] = row, token
                    new_scores[image, live] = score
                    live += 1
                if self._settled(texts[image], new_scores[image], k):
                    new_scores[image] = float("-inf")
            if bool(torch.isinf(new_scores).all()):
                break
            text = torch.cat([text[parents], tokens.unsqueeze(1)], dim=1)
            scores = new_scores
        return finished

    def _note_text(self, texts: dict[str, float], caption: tuple[int, ...], score: float) -> None:
        decoded = _decode(self.tokenizer, caption)
        if decoded and score > texts.get(decoded, float("-inf")):
            texts[decoded] = score

    @staticmethod
    def _settled(texts: dict[str, float], live_scores: torch.Tensor, k: int) -> bool:
        if len(texts) < k:
            return False
        kth = sorted(texts.values(), reverse=True)[k - 1]
        return float(live_scores.max()) <= kth

    def _best(self, finished: dict[tuple[int, ...], float], k: int) -> list[Candidate]:
        best: dict[str, Candidate] = {}
        for caption, score in finished.items():
            text = _decode(self.tokenizer, caption)
            if text and (text not in best or score > best[text].score):
                best[text] = Candidate(text, float(score), len(caption) + 1, caption)
        return sorted(best.values(), key=lambda c: (-c.score, c.text))[:k]
