"""Put text from data or configuration into Markdown reports without it turning into markup.

Markdown passes inline HTML through, so a caption ``<script>alert(1)</script>`` copied into a
report would run in a viewer that renders it (the Kubeflow UI, MLflow); a ``|`` would split a
table cell. Every report writer sends such text through :func:`text` or :func:`cell`.

Documents with a generated part (the README's corpus table, the dependency audit in
``docs/security.md``) keep it between two marker lines: :func:`generated_section` reads it and
:func:`with_generated_section` rewrites it.
"""

from __future__ import annotations

import html
import re


def text(value: object) -> str:
    """Escape ``&``, ``<`` and ``>`` so ``value`` shows as written in Markdown prose, headings and lists.

    Args:
        value: Anything; ``str()`` of it is escaped.

    Returns:
        The text with HTML's special characters as entities.
    """
    return html.escape(str(value), quote=False)


def cell(value: object) -> str:
    """Make ``value`` one Markdown table cell: :func:`text`, ``|`` escaped, line breaks as ``<br>``.

    Args:
        value: Anything; ``str()`` of it is used.

    Returns:
        The cell's text.
    """
    return text(value).replace("|", "\\|").replace("\n", "<br>")


def generated_section(text: str, start: str, end: str) -> str:
    """The text a document holds between the marker lines ``start`` and ``end`` (empty when they are absent)."""
    found = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), text, re.S)
    return found.group(1) if found else ""


def with_generated_section(text: str, start: str, end: str, rendered: str, where: str) -> str:
    """``text`` with what stands between its marker lines ``start`` and ``end`` replaced by ``rendered``.

    Args:
        text: The document.
        start: The opening marker (a line of its own).
        end: The closing marker.
        rendered: The new section (ending in a newline).
        where: The document's name, for the error.

    Raises:
        ValueError: The document has no such markers.
    """
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"{where} has no generated-section markers ({start} ... {end})")
    return pattern.sub(lambda _: f"{start}\n{rendered}{end}", text)
