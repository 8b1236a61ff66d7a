"""Every relative Markdown link in README.md and docs/ names a file of the repository, and its #anchor a heading there."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans (no links live there)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(lines)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of ``page``: lower case, punctuation dropped, spaces to ``-``, repeats ``-1``..."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        if fenced or not (match := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)):
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text(encoding="utf-8")))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I)]  # http:, https:, mailto:


def test_the_pages_exist():
    assert REPO / "docs" / "README.md" in PAGES, "docs/README.md (the index) is missing"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif REPO not in resolved.parents and resolved != REPO:
            broken.append(f"{target}: outside the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_every_docs_page_is_reachable_from_the_index():
    linked = {(REPO / "docs" / target.partition("#")[0]).resolve() for target in relative_links(REPO / "docs" / "README.md")}
    missing = [str(page.relative_to(REPO)) for page in PAGES
               if page.parent != REPO and page.name != "README.md" and page not in linked]
    assert not missing, f"docs/README.md does not link {missing}"


def test_the_readme_keeps_the_commands_ci_runs():
    """.ci/run runs the README's test command; the README shows it and the main job."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "make setup && make test " in readme and "make setup && make pipeline" in readme
    assert re.search(r"^make setup$", ci, re.M) and re.search(r"^make test$", ci, re.M)


def test_the_anchor_rule_and_the_link_pattern():
    page = REPO / "docs" / "pipelines.md"
    assert "running-locally-make-pipeline" in anchors(page)
    assert relative_links(page) and all(not t.startswith("http") for t in relative_links(page))
    assert prose("a `[x](nowhere.md)` b\n```\n[y](nowhere.md)\n```\n[z](here.md)").count("nowhere") == 0
