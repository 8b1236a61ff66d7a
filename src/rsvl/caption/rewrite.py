"""Rewriters turn a caption into SAR wording: a rule-based default and an OpenAI-compatible chat model.

Both implement :class:`Rewriter` and carry a ``name`` (``rule`` or ``chat:<model>``) that is stored
with every caption they produce, so a dataset says which backend wrote which sentence. No model
weights ship with the project: the chat rewriter talks to an endpoint (a cluster's vLLM or any
OpenAI-compatible server) over HTTP with the standard library.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rsvl.caption.words import fix_articles, normalise
from rsvl.errors import RsvlError

PROMPT_FILE = Path(__file__).parent / "prompts" / "sar_rewrite.md"

COLOUR_WORDS = (
    "red", "green", "blue", "yellow", "white", "black", "grey", "gray", "brown", "orange", "purple",
    "pink", "violet", "turquoise", "cyan", "magenta", "beige", "golden", "silver", "emerald", "azure",
    "navy", "olive", "maroon", "teal", "khaki", "reddish", "greenish", "bluish", "yellowish",
    "whitish", "greyish", "grayish", "brownish", "colorful", "colourful", "coloured", "colored",
)
"""Words that name a colour, which a SAR image cannot show; the quality filter rejects them outside names."""

_COLOUR = r"(?:" + "|".join(COLOUR_WORDS) + r")"
_COLOUR_RUN = re.compile(
    rf"\b(?P<colour>(?:(?:light|dark|bright|pale|deep)[\s-]+)?{_COLOUR}(?:-?(?:colou?red|roofed|ish))?"
    rf"(?:(?:\s*,\s*|\s+and\s+|\s+or\s+|-){_COLOUR}(?:-?(?:colou?red|roofed|ish))?)*)\b\s*",
    re.IGNORECASE,
)
_COLOUR_AND = re.compile(rf"\b(is|are|looks?|appears?)\s+(?:very\s+)?(?P<colour>{_COLOUR})\s+and\s+", re.IGNORECASE)
_COLOUR_PREDICATE = re.compile(rf"\s+(?:is|are|looks?|appears?)\s+(?:very\s+)?(?P<colour>{_COLOUR})\b", re.IGNORECASE)
_COLOUR_WORD = re.compile(rf"\b{_COLOUR}\b", re.IGNORECASE)
# "SAR" is among the prefixes so that a caption already about a SAR image keeps one "SAR".
_OPTICAL_NOUNS = re.compile(r"\b(?:(?:SAR|radar|aerial|satellite|optical|remote sensing)\s+)*"
                            r"(?:image|photo|photograph|picture)\b", re.IGNORECASE)


def in_proper_name(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is part of a capitalised multi-word name ("Red Sea", "US Navy").

    The words must be capitalised and followed by a capitalised word, or preceded by one that does
    not open the sentence (a capital "Red" that opens "Red ships ..." is still a colour).

    Args:
        text: The caption.
        start: Start of the words.
        end: End of the words.
    """
    if not text[start:end][:1].isupper():
        return False
    following = re.match(r"\s+(\w)", text[end:])
    if following and following.group(1).isupper():
        return True
    previous = re.search(r"(\w[\w'-]*)\s+$", text[:start])
    if not previous or not previous.group(1)[:1].isupper():
        return False
    before = text[:previous.start()].rstrip()
    return bool(before) and before[-1] not in ".!?"


def colour_words(text: str) -> list[str]:
    """Return the colour words of ``text`` that are not part of a proper name, in order.

    Args:
        text: A caption.
    """
    return [m.group(0) for m in _COLOUR_WORD.finditer(text) if not in_proper_name(text, m.start(), m.end())]


def _unless_name(replacement: str):
    def replace(match: re.Match) -> str:
        named = in_proper_name(match.string, match.start("colour"), match.end("colour"))
        return match.group(0) if named else match.expand(replacement)
    return replace


class RewriterError(RsvlError):
    """A rewriter backend failed; the message names the endpoint and what went wrong."""


class Rewriter(Protocol):
    """Rewrites one caption for a SAR image; ``name`` is recorded with every caption it writes."""

    name: str

    def rewrite(self, caption: str) -> str:
        """Return the SAR version of ``caption``."""
        ...


class RuleRewriter:
    """Deterministic rewrite: drop colour words and colour predicates, call the image a SAR image.

    It keeps every object, count and position because it only deletes colour phrases and renames
    the picture, which is why it is the default when no language model is reachable. Colour words
    inside capitalised names ("Red Sea", "White House") are kept, and "a"/"an" are made to agree
    with the word that follows once a colour word is gone.
    """

    name = "rule"

    def rewrite(self, caption: str) -> str:
        """Return ``caption`` without colours and with "SAR image" for photo/picture words.

        Args:
            caption: An optical caption.
        """
        text = _COLOUR_AND.sub(_unless_name(r"\1 "), caption)
        text = _COLOUR_PREDICATE.sub(_unless_name(""), text)
        text = _COLOUR_RUN.sub(_unless_name(""), text)
        text = _OPTICAL_NOUNS.sub("SAR image", text)
        text = fix_articles(text)
        text = re.sub(r"\s+([,.;:])", r"\1", text)
        text = re.sub(r"\s{2,}", " ", text).strip()
        return text[:1].upper() + text[1:] if text else text

    def diversify(self, caption: str, *, seed: int = 0) -> list[str]:
        """Return the one wording the rules give (:meth:`rewrite`); ``seed`` is unused.

        Args:
            caption: The caption to reword.
            seed: Ignored (the rules are deterministic).
        """
        return [self.rewrite(caption)]


@dataclass(frozen=True)
class FewShotPrompt:
    """The system instruction and hand-written optical/SAR example pairs of the chat rewriter."""

    system: str
    examples: tuple[tuple[str, str], ...]

    def messages(self, caption: str) -> list[dict]:
        """Build chat messages: system, one user/assistant pair per example, then the caption."""
        messages = [{"role": "system", "content": self.system}]
        for optical, sar in self.examples:
            messages += [{"role": "user", "content": optical}, {"role": "assistant", "content": sar}]
        return messages + [{"role": "user", "content": caption}]


def load_prompt(path: str | Path = PROMPT_FILE) -> FewShotPrompt:
    """Read a prompt file: a ``## System`` section and ``## Example`` sections of ``Optical:``/``SAR:`` lines.

    Args:
        path: The markdown prompt (default: the packaged ``prompts/sar_rewrite.md``).

    Raises:
        RewriterError: The file lacks a system section or has an example without both lines.
    """
    text = Path(path).read_text(encoding="utf-8")
    sections = re.split(r"^## +", text, flags=re.MULTILINE)[1:]
    system, examples = None, []
    for section in sections:
        title, _, body = section.partition("\n")
        if title.strip().lower() == "system":
            system = " ".join(body.split())
        elif title.strip().lower() == "example":
            pair = dict(re.findall(r"^(Optical|SAR):\s*(.+?)\s*$", body, flags=re.MULTILINE))
            if set(pair) != {"Optical", "SAR"}:
                raise RewriterError(f"{path}: an example needs one 'Optical:' and one 'SAR:' line, got {body.strip()!r}")
            examples.append((pair["Optical"], pair["SAR"]))
    if not system:
        raise RewriterError(f"{path}: no '## System' section")
    return FewShotPrompt(system, tuple(examples))


class ChatRewriter:
    """Rewrite through an OpenAI-compatible chat endpoint (``POST {base_url}/v1/chat/completions``).

    Args:
        base_url: Server root, for example ``http://vllm.sar-text.svc:8000``.
        model: Model name the server serves.
        prompt: Few-shot prompt (default: the packaged one).
        timeout_s: Seconds to wait for one completion.
        api_key: Bearer token, if the server wants one.
        temperature: Sampling temperature of :meth:`diversify` (:meth:`rewrite` uses 0).
        variants: Wordings :meth:`diversify` asks for in one request.
    """

    def __init__(self, base_url: str, model: str, *, prompt: FewShotPrompt | None = None,
                 timeout_s: float = 30.0, api_key: str | None = None, temperature: float = 0.8,
                 variants: int = 3) -> None:
        self.url = base_url.rstrip("/") + "/v1/chat/completions"
        self.model = model
        self.name = f"chat:{model}"
        self.prompt = prompt or load_prompt()
        self.timeout_s = timeout_s
        self.api_key = api_key
        self.temperature = temperature
        self.variants = variants

    def rewrite(self, caption: str) -> str:
        """Ask the model for the SAR version of ``caption`` (temperature 0, one choice).

        Args:
            caption: The caption to rewrite.

        Returns:
            The first non-empty line of the reply, without surrounding quotes.

        Raises:
            RewriterError: The endpoint is unreachable, answers an HTTP error, or the reply is
                not a chat completion with text.
        """
        choices = self._complete(caption, {"temperature": 0, "n": 1})
        reply = _first_line(choices[0])
        if not reply:
            raise RewriterError(f"chat endpoint {self.url} answered an empty completion")
        return reply

    def diversify(self, caption: str, *, seed: int = 0) -> list[str]:
        """Ask for :attr:`variants` different SAR wordings of ``caption`` in one sampled request.

        Args:
            caption: The caption to reword.
            seed: Sampling seed sent with the request, so a run can be repeated.

        Returns:
            The distinct wordings (compared without case and punctuation) in reply order; fewer
            than asked for when the model repeats itself.

        Raises:
            RewriterError: As :meth:`rewrite`, or when no choice holds text.
        """
        choices = self._complete(caption, {"temperature": self.temperature, "n": self.variants, "seed": seed})
        wordings = distinct([_first_line(choice) for choice in choices])
        if not wordings:
            raise RewriterError(f"chat endpoint {self.url} answered an empty completion")
        return wordings

    def _complete(self, caption: str, sampling: dict) -> list[str]:
        body = json.dumps({"model": self.model, "messages": self.prompt.messages(caption), **sampling}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - configured URL
                payload = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")[:200]
            raise RewriterError(f"chat endpoint {self.url} answered HTTP {err.code}: {detail}") from err
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise RewriterError(f"chat endpoint {self.url} is unreachable: {err}") from err
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RewriterError(f"chat endpoint {self.url} did not answer JSON: {err}") from err
        return self._contents(payload)

    def _contents(self, payload) -> list[str]:
        try:
            contents = [str(choice["message"]["content"]) for choice in payload["choices"]]
        except (KeyError, TypeError):
            contents = []
        if not contents:
            raise RewriterError(f"chat endpoint {self.url} answered no choices[0].message.content: "
                                f"{json.dumps(payload)[:200]}")
        return contents


def _first_line(content: str) -> str:
    lines = [line.strip().strip("\"'").strip() for line in content.splitlines()]
    return next((line for line in lines if line), "")


def distinct(wordings: list[str]) -> list[str]:
    """Drop empty wordings and repeats (compared as :func:`~rsvl.caption.words.normalise` does), keeping order.

    Args:
        wordings: Candidate captions.
    """
    seen, kept = set(), []
    for wording in wordings:
        key = normalise(wording)
        if key and key not in seen:
            seen.add(key)
            kept.append(wording)
    return kept


def build_rewriter(kind: str, chat=None) -> Rewriter:
    """Build the rewriter a :class:`rsvl.config.caption.CaptionConfig` names.

    Args:
        kind: ``"rule"`` or ``"chat"``.
        chat: The config's :class:`~rsvl.config.caption.ChatEndpoint` (needed for ``"chat"``).
    """
    if kind == "rule":
        return RuleRewriter()
    if chat is None:
        raise RewriterError("the chat rewriter needs an endpoint (base_url and model)")
    api_key = os.environ.get(chat.api_key_env) if chat.api_key_env else None
    return ChatRewriter(chat.base_url, chat.model, timeout_s=chat.timeout_s, api_key=api_key,
                        temperature=chat.temperature, variants=chat.variants)
