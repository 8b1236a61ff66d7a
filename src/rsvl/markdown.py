"""Put text from data or configuration into Markdown reports without it turning into markup.

Markdown passes inline HTML through, so a caption ``<script>alert(1)</script>`` copied into a
report would run in a viewer that renders it (the Kubeflow UI, MLflow); a ``|`` would split a
table cell. Every report writer sends such text through :func:`text` or :func:`cell`.
"""

from __future__ import annotations

import html


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
