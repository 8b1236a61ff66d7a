"""Text from data or configuration shows as written in the Markdown and HTML reports, never as markup."""

from __future__ import annotations

import html

import pytest

from rsvl import markdown
from rsvl.evaluate.report import Section, Table, html_report, markdown_report
from rsvl.gate import GateDecision, gate_markdown

SCRIPT = "<script>alert(1)</script> & a | b"
ESCAPED_CELL = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; a \\| b"


def test_text_and_cell_escape_markup_pipes_and_line_breaks():
    assert markdown.text(SCRIPT) == "&lt;script&gt;alert(1)&lt;/script&gt; &amp; a | b"
    assert markdown.cell(SCRIPT + "\nsecond") == ESCAPED_CELL + "<br>second"
    assert markdown.text("it's \"quoted\"") == "it's \"quoted\""


def test_a_caption_with_markup_is_escaped_in_both_evaluation_reports(tmp_path):
    sections = [Section(f"captions {SCRIPT}", {"test.CIDEr": 0.5}, unavailable={"test.x": SCRIPT}, notes=[SCRIPT],
                        tables=[Table("Generated captions", ["sample", "generated"], [["a", SCRIPT]])])]
    text = markdown_report("report", sections, tmp_path)
    assert "<script>" not in text
    assert f"| a | {ESCAPED_CELL} |" in text and f"| test.x | unavailable: {ESCAPED_CELL} |" in text
    assert f"## captions {markdown.text(SCRIPT)}" in text and f"- {markdown.text(SCRIPT)}" in text
    page = html_report("report", sections)
    assert "<script>" not in page and f"<td>{html.escape(SCRIPT)}</td>" in page


def test_gate_report_escapes_markup_in_reasons_and_metric_names():
    decision = GateDecision(promote=False, reasons=[f"minimum {SCRIPT}: failed"], candidate={"<b>x</b>.mR": 1.0})
    text = gate_markdown(decision, "m", "2")
    assert "<script>" not in text and "<b>" not in text
    assert f"- minimum {markdown.text(SCRIPT)}: failed" in text and "| &lt;b&gt;x&lt;/b&gt;.mR | 1.0000 |" in text


def test_a_generated_section_is_read_and_rewritten_between_its_markers_only():
    start, end = "<!-- t: start -->", "<!-- t: end -->"
    doc = f"intro\n{start}\nold | row\n{end}\noutro {start}\n"
    assert markdown.generated_section(doc, start, end) == "old | row\n"
    assert markdown.with_generated_section(doc, start, end, "new\n", "doc.md") == \
        f"intro\n{start}\nnew\n{end}\noutro {start}\n"
    assert markdown.generated_section("no markers", start, end) == ""
    with pytest.raises(ValueError, match=r"doc\.md has no generated-section markers"):
        markdown.with_generated_section("no markers", start, end, "new\n", "doc.md")
