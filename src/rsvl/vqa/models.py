"""Closed-set VQA models on a frozen CLIP, behind one interface a generative model can also fill.

Stand-ins for SAR-GPT (no TinyGPT-V weights exist offline), on an rsvl open_clip model:
:class:`ClipAnswerRanker` (zero-shot: the answer whose statement best matches the image),
:class:`ClipLinearHead` (a logistic-regression head per question on frozen embeddings) and
:class:`MajorityAnswer` (the baseline). All answer from the closed answer set seen per question in
training (:func:`answer_vocabulary`); a generative model plugs in by implementing :class:`VqaModel`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from rsvl.errors import DataError, ModelError
from rsvl.models.preprocess import fit_bands
from rsvl.vqa.llava import qa_pairs
from rsvl.vqa.questions import parse_question

EMBED_BATCH = 64


@runtime_checkable
class VqaModel(Protocol):
    """Anything that answers one question per image."""

    def answer(self, images: Sequence[Any], questions: Sequence[str]) -> list[str]:
        """Answer ``questions[i]`` about ``images[i]``.

        Args:
            images: (bands, H, W) tensors/arrays in dataset units, or PIL images.
            questions: One question per image, ``<image>`` token removed.

        Returns:
            One answer string per question.
        """
        ...


def answer_vocabulary(records: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """The closed answer set of every question seen in ``records`` (sorted answers).

    Args:
        records: LLaVA records (usually the train split's).

    Returns:
        ``{question: sorted distinct answers}``.
    """
    vocabulary: dict[str, set[str]] = {}
    for record in records:
        for question, answer in qa_pairs(record):
            vocabulary.setdefault(question, set()).add(answer)
    return {question: sorted(answers) for question, answers in vocabulary.items()}


def _check_pairs(images: Sequence[Any], questions: Sequence[str], known: dict[str, Any]) -> None:
    """One question per image, each one the model was built for (else the error names it)."""
    if len(images) != len(questions):
        raise DataError(f"need one question per image, got {len(images)} images and {len(questions)} questions")
    for question in questions:
        _candidates(known, question)


class ClipImageEncoder:
    """A frozen open_clip image tower with its validation preprocessing, encoding one batch at a time.

    Args:
        model: An rsvl open_clip model (put in eval mode here).
        preprocess: Its validation preprocessing.
        device: Where the model lives.
        batch_size: Images preprocessed and encoded together; the embeddings do not depend on it.
    """

    def __init__(self, model: nn.Module, preprocess: Any, device: str | torch.device = "cpu",
                 batch_size: int = EMBED_BATCH) -> None:
        if batch_size < 1:
            raise ModelError(f"batch_size must be positive, got {batch_size}")
        self.model = model.eval()
        self.preprocess = preprocess
        self.device = device
        self.batch_size = batch_size
        # models built outside rsvl carry no rsvl_spec: assume RGB
        self.in_bands = int(getattr(model, "rsvl_spec", {}).get("in_bands", 3))

    def _batch(self, images: Sequence[Any]) -> torch.Tensor:
        return torch.stack([self.preprocess(fit_bands(image, self.in_bands)) for image in images])

    def _encode(self, images: Sequence[Any]) -> torch.Tensor:
        # float32 on the CPU, so embeddings combine and compare whatever the device or AMP dtype
        return self.model.encode_image(self._batch(images).to(self.device)).float().cpu()

    @staticmethod
    def _unique(images: Sequence[Any]) -> tuple[list[int], list[Any]]:
        """Each image's slot among the distinct image objects, and those objects in slot order."""
        unique: dict[int, int] = {}
        # key on object identity; the same image object repeats for each question about it
        order = [unique.setdefault(id(image), len(unique)) for image in images]
        return order, list({slot: image for image, slot in zip(images, order)}.values())

    @torch.no_grad()
    def embed(self, images: Sequence[Any]) -> torch.Tensor:
        """L2-normalised embeddings (images, dim) on the CPU; a repeated image object is embedded once.

        Args:
            images: Images in memory (the same object repeats for each question about it).
        """
        order, firsts = self._unique(images)
        parts = [self._encode(firsts[start:start + self.batch_size])
                 for start in range(0, len(firsts), self.batch_size)]
        embeddings = nn.functional.normalize(torch.cat(parts), dim=-1)
        return embeddings[torch.tensor(order, dtype=torch.long)]

    @torch.no_grad()
    def embed_sequence(self, images: Sequence[Any]) -> torch.Tensor:
        """L2-normalised embeddings of a long, possibly lazy sequence, read one slice at a time.

        A lazy sequence such as :class:`rsvl.vqa.scoring.RecordImages` then holds one batch in memory.

        Args:
            images: Any sequence supporting ``len`` and slicing (no de-duplication).

        Returns:
            (len(images), dim) on the CPU, equal to :meth:`embed` of the same images.
        """
        parts = [self._encode(images[start:start + self.batch_size])
                 for start in range(0, len(images), self.batch_size)]
        if not parts:
            raise DataError("no images to embed")
        return nn.functional.normalize(torch.cat(parts), dim=-1)


def answer_statement(question: str, answer: str) -> str:
    """Write a candidate answer as a caption-like statement the text tower can match to an image.

    Args:
        question: A generated question (other questions fall back to ``"question answer"``).
        answer: A candidate answer.

    Returns:
        E.g. ``"there are 3 ships in the image"`` or ``"the image shows only open sea"``.
    """
    kind, noun = parse_question(question)
    if kind == "presence":
        return f"there is {'a' if answer == 'yes' else 'no'} {noun} in the image"
    if kind == "count":
        return f"there {'is' if answer == '1' else 'are'} {answer} {noun} in the image"
    if kind == "position":
        return f"the largest {noun} is in the {answer} of the image"
    if kind == "land":
        return "there is land in the image" if answer == "yes" else "the image shows only open sea"
    if kind == "land_sea":
        return f"the image is mostly {answer}"
    return f"{question} {answer}"


def _candidates(vocabulary: dict[str, Any], question: str) -> Any:
    if question not in vocabulary:
        raise ModelError(f"question {question!r} is not in the model's closed answer set "
                         f"(known: {sorted(vocabulary)})")
    return vocabulary[question]


class ClipAnswerRanker:
    """Zero-shot closed-set VQA: rank candidate-answer statements against the image.

    Args:
        model: An rsvl open_clip model.
        preprocess: Its validation preprocessing.
        tokenizer: Its tokenizer.
        vocabulary: Candidate answers per question (:func:`answer_vocabulary` of the train split).
        device: Where the model lives.
    """

    def __init__(self, model: nn.Module, preprocess: Any, tokenizer: Any,
                 vocabulary: dict[str, list[str]], device: str | torch.device = "cpu") -> None:
        self.encoder = ClipImageEncoder(model, preprocess, device)
        self.tokenizer = tokenizer
        self.vocabulary = vocabulary
        self._text_cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _statements(self, question: str) -> torch.Tensor:
        if question not in self._text_cache:
            texts = [answer_statement(question, a) for a in _candidates(self.vocabulary, question)]
            tokens = self.tokenizer(texts).to(self.encoder.device)
            embedded = self.encoder.model.encode_text(tokens).float().cpu()
            self._text_cache[question] = nn.functional.normalize(embedded, dim=-1)
        return self._text_cache[question]

    def answer(self, images: Sequence[Any], questions: Sequence[str]) -> list[str]:
        """Answer each question with its best-matching candidate (ties: first in sorted order)."""
        _check_pairs(images, questions, self.vocabulary)
        if not questions:
            return []
        embeddings = self.encoder.embed(images)
        return [self.vocabulary[q][int((self._statements(q) @ e).argmax())] for e, q in zip(embeddings, questions)]


class MajorityAnswer:
    """Answer every question with its most frequent training answer (ties: alphabetical first).

    Args:
        records: Training LLaVA records.
    """

    def __init__(self, records: Sequence[dict[str, Any]]) -> None:
        counts: dict[str, Counter] = {}
        for record in records:
            for question, answer in qa_pairs(record):
                counts.setdefault(question, Counter())[answer] += 1
        self.answers = {q: min(c, key=lambda a: (-c[a], a)) for q, c in counts.items()}

    def answer(self, images: Sequence[Any], questions: Sequence[str]) -> list[str]:
        """The majority answer of each question."""
        _check_pairs(images, questions, self.answers)
        return [self.answers[q] for q in questions]


def train_softmax_head(features: torch.Tensor, targets: torch.Tensor, classes: int,
                       weight_decay: float = 1e-3, steps: int = 200) -> nn.Linear:
    """Fit a multinomial logistic regression (full batch, L-BFGS, L2 penalty).

    Args:
        features: (samples, dim) float32.
        targets: (samples,) class indices.
        classes: Number of classes.
        weight_decay: L2 penalty on the weights (keeps a 100-sample fit from memorising).
        steps: L-BFGS iterations.

    Returns:
        The fitted linear layer (dim → classes).
    """
    torch.manual_seed(0)
    head = nn.Linear(features.shape[1], classes)
    # a zero start makes the L-BFGS path, and so the head, independent of the random init
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimiser = torch.optim.LBFGS(head.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(head(features), targets) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    # from_embeddings runs under no_grad, and L-BFGS needs gradients; the matrices are a few hundred
    # rows, where more threads only wait on each other (20x slower on 2 busy cores)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():
            optimiser.step(closure)
    finally:
        torch.set_num_threads(threads)
    return head.eval()


def standardise(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean, std, standardised features)`` over the rows; a constant column gets std 1e-6, not 0."""
    mean, std = features.mean(dim=0), features.std(dim=0).clamp_min(1e-6)
    return mean, std, (features - mean) / std


def fit_heads(records: Sequence[dict[str, Any]], features: torch.Tensor,
              weight_decay: float = 1e-3) -> dict[str, tuple[list[str], nn.Linear | None]]:
    """One softmax head per question string on the rows of ``features`` (row i: ``records[i]``'s image).

    Args:
        records: Training LLaVA records.
        features: (records, dim) standardised features.
        weight_decay: L2 penalty of each head.

    Returns:
        ``{question: (sorted answers, head)}``; a question with one training answer gets no head.
    """
    rows: dict[str, list[tuple[int, str]]] = {}
    for index, record in enumerate(records):
        for question, answer in qa_pairs(record):
            rows.setdefault(question, []).append((index, answer))
    heads: dict[str, tuple[list[str], nn.Linear | None]] = {}
    for question, pairs in rows.items():
        classes = sorted({answer for _, answer in pairs})
        if len(classes) == 1:
            heads[question] = (classes, None)
            continue
        index = {answer: i for i, answer in enumerate(classes)}
        x = features[torch.tensor([i for i, _ in pairs])]
        y = torch.tensor([index[a] for _, a in pairs])
        heads[question] = (classes, train_softmax_head(x, y, len(classes), weight_decay))
    return heads


class ClipLinearHead:
    """Closed-set VQA by one logistic-regression head per question on frozen CLIP image embeddings.

    Build with :meth:`fit`. Features are L2-normalised image embeddings standardised with the
    training images' mean and standard deviation.
    """

    def __init__(self, encoder: ClipImageEncoder, mean: torch.Tensor, std: torch.Tensor,
                 heads: dict[str, tuple[list[str], nn.Linear | None]]) -> None:
        self.encoder, self.mean, self.std, self.heads = encoder, mean, std, heads

    @classmethod
    def fit(cls, model: nn.Module, preprocess: Any, records: Sequence[dict[str, Any]],
            images: Sequence[Any], device: str | torch.device = "cpu",
            weight_decay: float = 1e-3) -> "ClipLinearHead":
        """Embed the training images slice by slice, then train the heads on the embeddings.

        Args:
            model: An rsvl open_clip model (frozen; only the heads learn).
            preprocess: Its validation preprocessing.
            records: Training LLaVA records.
            images: The image of each record, in order (a lazy :class:`rsvl.vqa.scoring.RecordImages`).
            device: Where the model lives.
            weight_decay: L2 penalty of each head.

        Returns:
            The fitted model (see :meth:`from_embeddings`).

        Raises:
            DataError: ``records`` is empty or its length differs from ``images``.
        """
        if not records or len(records) != len(images):
            raise DataError(f"need one image per training record and at least one record "
                            f"({len(records)} records, {len(images)} images)")
        encoder = ClipImageEncoder(model, preprocess, device)
        return cls.from_embeddings(encoder, records, encoder.embed_sequence(images), weight_decay)

    @classmethod
    @torch.no_grad()
    def from_embeddings(cls, encoder: ClipImageEncoder, records: Sequence[dict[str, Any]],
                        embeddings: torch.Tensor, weight_decay: float = 1e-3) -> "ClipLinearHead":
        """Train the heads on the training images' embeddings (no image is touched here).

        Args:
            encoder: The encoder that made ``embeddings`` (the fitted model answers with it).
            records: Training LLaVA records.
            embeddings: (records, dim) L2-normalised embeddings, row i of ``records[i]``'s image.
            weight_decay: L2 penalty of each head.

        Returns:
            The fitted model; a question with one training answer gets no head (it always answers that).

        Raises:
            DataError: ``records`` is empty or its length differs from the embeddings'.
        """
        if not records or len(records) != len(embeddings):
            raise DataError(f"need one embedding per training record and at least one record "
                            f"({len(records)} records, {len(embeddings)} embeddings)")
        mean, std, features = standardise(embeddings)
        return cls(encoder, mean, std, fit_heads(records, features, weight_decay))

    def _features(self, images: Sequence[Any]) -> torch.Tensor:
        """The unstandardised features of images in memory (here: their embeddings)."""
        return self.encoder.embed(images)

    @property
    def vocabulary(self) -> dict[str, list[str]]:
        """The closed answer set of each question."""
        return {question: classes for question, (classes, _) in self.heads.items()}

    @torch.no_grad()
    def answer(self, images: Sequence[Any], questions: Sequence[str]) -> list[str]:
        """The most probable training answer of each question."""
        _check_pairs(images, questions, self.vocabulary)
        if not questions:
            return []
        features = (self._features(images) - self.mean) / self.std
        answers = []
        for feature, question in zip(features, questions):
            classes, head = self.heads[question]
            answers.append(classes[0] if head is None else classes[int(head(feature[None]).argmax())])
        return answers

