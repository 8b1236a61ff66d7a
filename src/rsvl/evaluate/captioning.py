"""Captioning metrics (BLEU-1..4, ROUGE-L, CIDEr, METEOR, SPICE) and CoCa caption generation.

Scores come from pycocoevalcap 1.2, the COCO caption evaluation code the captioning papers use:
``Bleu(4)`` (corpus BLEU, "closest" reference length), ``Rouge`` (ROUGE-L, β = 1.2) and ``Cider``
(CIDEr-D, σ = 6, ×10) are pure Python and always run. Values are on pycocoevalcap's scale (BLEU,
ROUGE-L, METEOR, SPICE in [0, 1]; CIDEr in [0, 10]); papers often print them ×100.

Tokenisation follows the COCO evaluation: Stanford's PTBTokenizer (the jar shipped in
pycocoevalcap) lower-cases and splits, then punctuation tokens are dropped. It needs Java; where
``java`` is not on PATH, :func:`python_tokenize` does the same in Python (lower case, contractions
and punctuation split off PTB-style, the same punctuation list dropped); it can differ from PTB on
rare forms (URLs, abbreviations with dots). :class:`CaptionScores` says which tokenizer ran.

METEOR (pycocoevalcap's ``meteor-1.5.jar``) runs when Java runs. SPICE needs Java and the Stanford
CoreNLP 3.6.0 jars, which pycocoevalcap downloads from nlp.stanford.edu on first use; this package
never downloads them, so SPICE runs only where they were installed beforehand. A metric that cannot
run is not reported as a number: it goes to ``unavailable`` with the reason.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import open_clip
import torch
from torch import nn

from rsvl.console import Progress
from rsvl.data.dataset import ManifestDataset
from rsvl.errors import DataError, ModelError
from rsvl.evaluate.embedding import image_batches
from rsvl.models.decoder_rows import decoder_rows

PUNCTUATION = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
                         "...", ";", "-lrb-", "-rrb-", "-lcb-", "-rcb-"])
"""Tokens pycocoevalcap's PTB wrapper drops (its list, plus the lower-cased bracket codes)."""
BRACKETS = frozenset("()[]{}\"")
"""PTB turns brackets and double quotes into codes (-LRB-, ``) that are dropped, so Python drops them too."""
PTB_CLASS = "edu.stanford.nlp.process.PTBTokenizer"
CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
JAVA_TIMEOUT_S = 600
GENERATE_BATCH = 16

_CONTRACTION = re.compile(r"(?<=\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|(?:[a-z]\.){2,}|\w+(?:[-.,'/&]\w+)*|\.\.\.|--|[^\w\s]")


@dataclass(frozen=True)
class CaptionScores:
    """Captioning metrics of one set of generated captions.

    Attributes:
        metrics: ``BLEU_1..BLEU_4``, ``ROUGE_L``, ``CIDEr`` and, when they ran, ``METEOR``, ``SPICE``.
        unavailable: Metric name → why it was not computed.
        tokenizer: ``"ptb"`` (Stanford PTBTokenizer) or ``"python"`` (:func:`python_tokenize`).
        per_sample: Sample id → that caption's ``BLEU_4``, ``CIDEr`` and ``ROUGE_L``.
    """

    metrics: dict[str, float]
    unavailable: dict[str, str] = field(default_factory=dict)
    tokenizer: str = "python"
    per_sample: dict[str, dict[str, float]] = field(default_factory=dict)


def _package_dir() -> Path | None:
    spec = importlib.util.find_spec("pycocoevalcap")
    return Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None


def java_missing_reason() -> str | None:
    """Why Java-based metrics cannot run here, or ``None`` when ``java`` is on PATH."""
    return None if shutil.which("java") else "java not found on PATH"


def spice_missing_reason() -> str | None:
    """Why SPICE cannot run here (no Java, or CoreNLP jars not installed), or ``None``."""
    java = java_missing_reason()
    if java:
        return java
    package = _package_dir()
    lib = package / "spice" / "lib" if package else None
    missing = [jar for jar in CORENLP_JARS if lib is None or not (lib / jar).is_file()]
    if missing:
        return (f"Stanford CoreNLP 3.6.0 jars {missing} are not in {lib}; pycocoevalcap downloads them from "
                "nlp.stanford.edu on first use, which rsvl never does (offline); install them there to enable SPICE")
    return None


def python_tokenize(text: str) -> str:
    """PTB-like tokenisation in Python: lower case, split punctuation and contractions, drop punctuation.

    Args:
        text: A caption.

    Returns:
        Space-joined tokens ("The cat's mat." → "the cat 's mat").
    """
    spaced = _CONTRACTION.sub(r" \1", text.lower().replace("\n", " "))
    return " ".join(token for token in _TOKEN.findall(spaced) if token not in PUNCTUATION and token not in BRACKETS)


def _ptb_tokenize(lines: list[str]) -> list[str]:
    jar = _package_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    with tempfile.TemporaryDirectory(prefix="rsvl-ptb-") as tmp:
        source = Path(tmp) / "captions.txt"
        source.write_text("\n".join(lines), encoding="utf-8")
        result = subprocess.run(
            ["java", "-cp", str(jar), PTB_CLASS, "-preserveLines", "-lowerCase", str(source)],
            capture_output=True, timeout=JAVA_TIMEOUT_S, check=True,
        )
    out = result.stdout.decode("utf-8").split("\n")
    if len(out) < len(lines):
        raise RuntimeError(f"PTBTokenizer returned {len(out)} lines for {len(lines)} captions")
    return [" ".join(t for t in line.rstrip().split(" ") if t and t not in PUNCTUATION) for line in out[:len(lines)]]


def tokenize(captions: Mapping[Any, Sequence[str]], use_java: bool = True) -> tuple[dict[Any, list[str]], str]:
    """Tokenise captions the COCO way (PTB where Java runs, :func:`python_tokenize` otherwise).

    Args:
        captions: Key → captions.
        use_java: Use the PTB jar when Java is found; False always uses :func:`python_tokenize`.

    Returns:
        ``(key → tokenised captions, "ptb" or "python")``.
    """
    use_java = use_java and java_missing_reason() is None
    keys = [(key, index) for key, texts in captions.items() for index in range(len(texts))]
    lines = [" ".join(str(captions[key][index]).split()) for key, index in keys]
    tokenizer = "python"
    tokens = [python_tokenize(line) for line in lines]
    if use_java:
        wanted = [i for i, line in enumerate(lines) if line]
        ptb = _ptb_tokenize([lines[i] for i in wanted]) if wanted else []
        for i, line in zip(wanted, ptb):
            tokens[i] = line
        tokenizer = "ptb"
    result: dict[Any, list[str]] = {key: [] for key in captions}
    for (key, _), line in zip(keys, tokens):
        result[key].append(line)
    return result, tokenizer


_METEOR: list = []
"""The process's one METEOR scorer: its JVM loads the paraphrase tables once (~6 s), later calls take ms."""


def _close_meteor() -> None:
    for meteor in _METEOR:
        with meteor.lock:
            meteor.meteor_p.stdin.close()
            meteor.meteor_p.kill()
            meteor.meteor_p.wait()
    _METEOR.clear()


def start_meteor() -> bool:
    """Start the process's METEOR scorer now, when Java runs, so its JVM loads meanwhile.

    The JVM reads its paraphrase tables at start-up (7 s here, 13 s beside a busy torch), before
    its first request: started ahead of caption generation, that time overlaps with it. Calling
    it again, or scoring later, reuses the same scorer.

    Returns:
        Whether a scorer runs (False without Java).
    """
    if _METEOR:
        return True
    if java_missing_reason() is not None:
        return False
    import atexit

    from pycocoevalcap.meteor.meteor import Meteor

    _METEOR.append(Meteor())
    atexit.register(_close_meteor)
    return True


def _run_meteor(references: dict[str, list[str]], candidates: dict[str, list[str]]) -> float:
    start_meteor()
    try:
        score, _ = _METEOR[0].compute_score(references, candidates)
    except BaseException:
        _close_meteor()  # a JVM in an unknown state is not reused
        raise
    return float(score)


def _run_spice(references: dict[str, list[str]], candidates: dict[str, list[str]]) -> float:
    from pycocoevalcap.spice.spice import Spice

    score, _ = Spice().compute_score(references, candidates)
    return float(score)


def caption_metrics(
    references: Mapping[str, Sequence[str]],
    candidates: Mapping[str, str],
    *,
    use_java: bool = True,
) -> CaptionScores:
    """Score generated captions against reference captions.

    Args:
        references: Sample id → reference captions (at least one each).
        candidates: Sample id → the generated caption; same ids as ``references``.
        use_java: Use the Java tools (PTB, METEOR, SPICE) where they run; ``False``: Python
            tokenisation and no Java metrics (reported unavailable).

    Returns:
        Metrics, the ones that could not run with their reason, the tokenizer used and per-sample scores.

    Raises:
        DataError: Ids differ, nothing to score, or an id has no reference.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if set(references) != set(candidates) or not candidates:
        extra = sorted(set(references) ^ set(candidates))[:5]
        raise DataError(f"references and candidates must cover the same, non-empty set of ids (differing: {extra})")
    empty = [key for key, refs in references.items() if not refs]
    if empty:
        raise DataError(f"samples without reference captions: {empty[:5]}")
    ids = sorted(references)
    java_reason = java_missing_reason() if use_java else "Java tools disabled (use_java=False)"
    both = {**{("ref", key): list(references[key]) for key in ids}, **{("cand", key): [candidates[key]] for key in ids}}
    tokens, tokenizer = tokenize(both, use_java=java_reason is None)
    refs = {key: tokens[("ref", key)] for key in ids}
    cands = {key: tokens[("cand", key)] for key in ids}
    bleu, bleu_each = Bleu(4).compute_score(refs, cands, verbose=0)
    rouge, rouge_each = Rouge().compute_score(refs, cands)
    cider, cider_each = Cider().compute_score(refs, cands)
    metrics = {f"BLEU_{n + 1}": float(bleu[n]) for n in range(4)}
    metrics.update(ROUGE_L=float(rouge), CIDEr=float(cider))
    per_sample = {key: {"BLEU_4": float(bleu_each[3][i]), "ROUGE_L": float(rouge_each[i]),
                        "CIDEr": float(cider_each[i])} for i, key in enumerate(ids)}
    unavailable: dict[str, str] = {}
    runners: dict[str, tuple[str | None, Callable[..., float]]] = {
        "METEOR": (java_reason, _run_meteor),
        "SPICE": (java_reason or spice_missing_reason(), _run_spice),
    }
    for name, (reason, run) in runners.items():
        if reason is not None:
            unavailable[name] = reason
            continue
        try:
            metrics[name] = run(refs, cands)
        except (OSError, ValueError, RuntimeError, subprocess.SubprocessError) as err:
            unavailable[name] = f"{name} failed to run: {type(err).__name__}: {err}"
    return CaptionScores(metrics=metrics, unavailable=unavailable, tokenizer=tokenizer, per_sample=per_sample)


def is_captioner(model: nn.Module) -> bool:
    """Whether ``model`` can write captions (an open_clip CoCa: ``generate`` and a text decoder)."""
    return callable(getattr(model, "generate", None)) and hasattr(model, "text_decoder")


def decode_tokens(tokens: Sequence[int], tokenizer: Any = None, pad_id: int = 0) -> str:
    """Turn generated token ids into text: drop the start token, cut at end-of-text (or trailing padding).

    Args:
        tokens: Ids from ``CoCa.generate`` for one image.
        tokenizer: The model's tokenizer (its ``decode``, ``sot_token_id``, ``eot_token_id``);
            open_clip's default BPE tokenizer when it has none.
        pad_id: Padding id ``generate`` appends (the model's ``pad_id``, 0 in open_clip).
    """
    base = tokenizer if callable(getattr(tokenizer, "decode", None)) else open_clip.tokenizer._tokenizer
    sot = getattr(base, "sot_token_id", 49406)
    eot = getattr(base, "eot_token_id", 49407)
    kept = [int(t) for t in tokens]
    if eot in kept:
        kept = kept[:kept.index(eot)]
    else:
        while kept and kept[-1] == pad_id:
            kept.pop()
    return " ".join(base.decode([t for t in kept if t != sot]).split())


@torch.no_grad()
def generate_captions(
    model: nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    tokenizer: Any,
    dataset: ManifestDataset,
    media: str = "image",
    *,
    batch_size: int = GENERATE_BATCH,
    device: str | torch.device = "cpu",
    seq_len: int = 30,
    generation_type: str = "beam_search",
    label: str = "captioning",
) -> dict[str, str]:
    """Caption every row of ``dataset`` with a CoCa model (SAR-RS-CoCa's decoding).

    Args:
        model: An open_clip CoCa in eval mode, on ``device``.
        preprocess: Validation preprocessing.
        tokenizer: The model's tokenizer (for decoding).
        dataset: The split to caption.
        media: Media column the image tower reads.
        batch_size: Images per ``generate`` call.
        device: Where the model lives.
        seq_len: Longest caption in tokens, start token included.
        generation_type: ``beam_search`` (open_clip's default), ``top_k`` or ``top_p``.
        label: What the progress lines (``rsvl.evaluate`` logger) call the job.

    Returns:
        Sample id → generated caption.

    Raises:
        ModelError: The model cannot generate text (not a CoCa).
    """
    if not is_captioner(model):
        raise ModelError(f"captioning needs a CoCa model with generate(); {type(model).__name__} has none "
                         "(drop the 'captioning' task for contrastive-only models)")
    captions: list[str] = []
    progress = Progress(logging.getLogger("rsvl.evaluate"), label, len(dataset), "images")
    for batch in image_batches(dataset, media, preprocess, batch_size):
        # beam search reads only the last position's logits: project that one alone
        with decoder_rows(model, lambda states: states[:, -1:]):
            generated = model.generate(batch.to(device), seq_len=seq_len, generation_type=generation_type)
        captions.extend(decode_tokens(row.tolist(), tokenizer, getattr(model, "pad_id", 0)) for row in generated)
        progress.add(len(generated))
    return {str(dataset.record(i)["sample_id"]): caption for i, caption in enumerate(captions)}
