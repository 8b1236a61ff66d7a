"""Check the pinned stack (``requirements.lock``) against an offline advisory database.

    python scripts/audit_deps.py                  # print the findings; exit 1 if any is not accepted
    python scripts/audit_deps.py --docs           # ... and rewrite the table in docs/security.md

``pip-audit`` asks an online service (PyPI or OSV) and this project's machines may have none. The
offline database here is PyUp's free ``safety-db`` package (a test extra): every advisory it holds,
with the versions each affects. It is a snapshot (its date is printed with the findings), so a
clean result only says no advisory *up to that date* names a pinned version; run ``pip-audit -r
requirements.lock`` where the network allows for advisories after it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
import importlib.util
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from rsvl.markdown import generated_section, with_generated_section

ROOT = Path(__file__).resolve().parents[1]
LOCK, DOCS = ROOT / "requirements.lock", ROOT / "docs" / "security.md"
START, END = "<!-- dependency audit: start (python scripts/audit_deps.py --docs) -->", "<!-- dependency audit: end -->"


@dataclass(frozen=True)
class Finding:
    """One advisory that names a pinned version."""

    package: str
    version: str
    advisory_id: str
    cve: str
    affected: str
    summary: str


def normalise(name: str) -> str:
    """Return a distribution name in PEP 503 form (``Foo_bar`` → ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """Return ``{normalised name: version}`` of every ``name==version`` line of a lock file.

    Raises:
        ValueError: a line that is neither a pin, a comment nor blank, naming the file and line.
    """
    pins = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)(\s*;.*)?", line)
        if not match:
            raise ValueError(f"{path}:{number}: not a 'name==version' pin: {line!r} (the audit checks exact pins only)")
        pins[normalise(match.group(1))] = match.group(3)
    return pins


def load_database() -> tuple[dict[str, list[dict]], datetime]:
    """Return safety-db's advisories by normalised package name, and the snapshot's date."""
    spec = importlib.util.find_spec("safety_db")
    if spec is None:
        raise SystemExit("safety-db is not installed: pip install -e '.[test]' (it is a test extra)")
    # found, not imported: the package's __init__ opens a path relative to the working directory
    folder = Path(next(iter(spec.submodule_search_locations)))
    raw = json.loads((folder / "insecure_full.json").read_text(encoding="utf-8"))
    meta = raw.pop("$meta")
    return {normalise(name): entries for name, entries in raw.items()}, datetime.fromtimestamp(meta["timestamp"], timezone.utc)


def affects(spec_texts: list[str], version: str) -> bool:
    """Whether ``version`` falls in any of an advisory's ranges (each a specifier set such as ``>=1.0,<1.2``)."""
    try:
        parsed = Version(version)
    except InvalidVersion:
        return False  # a local or legacy version no range can name
    for text in spec_texts:
        try:
            if parsed in SpecifierSet(text, prereleases=True):
                return True
        except InvalidSpecifier:
            continue  # a handful of the database's old entries are free text, not ranges
    return False


def audit(pins: dict[str, str], database: dict[str, list[dict]]) -> list[Finding]:
    """Return every advisory of ``database`` that names a pinned version, sorted by package and id."""
    findings = []
    for package, version in pins.items():
        for entry in database.get(package, []):
            if affects(entry.get("specs") or [entry.get("v", "")], version):
                summary = " ".join(entry.get("advisory", "").split())
                findings.append(Finding(package, version, entry["id"], entry.get("cve") or "", entry.get("v", ""),
                                        summary[:160] + ("…" if len(summary) > 160 else "")))
    return sorted(findings, key=lambda f: (f.package, f.advisory_id))


def render(findings: list[Finding], pins: dict[str, str], database: dict[str, list[dict]], snapshot: datetime) -> str:
    """Return the markdown report: what was checked against what, then one row per finding."""
    named = sorted(package for package in pins if package in database)
    head = (f"{len(pins)} pinned distributions of `requirements.lock` checked against safety-db of {snapshot:%Y-%m-%d}; "
            f"it holds advisories for {len(named)} of them ({', '.join(named)}); **{len(findings)} findings**.\n")
    if not findings:
        return head
    rows = ["| package | pinned | advisory | CVE | affected | what |", "|---|---|---|---|---|---|"]
    rows += [f"| {f.package} | {f.version} | {f.advisory_id} | {f.cve or '—'} | `{f.affected}` | "
             f"{f.summary.replace('|', '/')} |" for f in findings]
    return head + "\n" + "\n".join(rows) + "\n"


def docs_with(text: str, rendered: str) -> str:
    """Return docs/security.md ``text`` with the report between its markers replaced by ``rendered``."""
    return with_generated_section(text, START, END, rendered, str(DOCS))


def docs_report(text: str) -> str:
    """Return the report currently between the markers of docs/security.md ``text``."""
    return generated_section(text, START, END)


def main(argv: list[str] | None = None) -> int:
    """Audit the lock; print the report; with ``--docs`` rewrite docs/security.md. Exit 1 on findings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--docs", action="store_true", help="rewrite the report in docs/security.md")
    args = parser.parse_args(argv)
    pins = read_lock(args.lock)
    database, snapshot = load_database()
    findings = audit(pins, database)
    report = render(findings, pins, database, snapshot)
    print(report, end="")
    if args.docs:
        DOCS.write_text(docs_with(DOCS.read_text(encoding="utf-8"), report), encoding="utf-8")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
