"""The dependency audit (scripts/audit_deps.py): pins read, ranges matched, the docs' report current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import audit_deps  # noqa: E402


@pytest.fixture(scope="module")
def database():
    return audit_deps.load_database()[0]


def test_pins_are_read_by_normalised_name_and_anything_else_is_refused(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# pinned\nPyYAML==5.3\nruamel.yaml==0.19.1  # trailing\nray[train]==2.60.0\n\n", encoding="utf-8")
    assert audit_deps.read_lock(lock) == {"pyyaml": "5.3", "ruamel-yaml": "0.19.1", "ray": "2.60.0"}
    lock.write_text("numpy==2.0\nrequests>=2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"requirements\.lock:2: not a 'name==version' pin: 'requests>=2'"):
        audit_deps.read_lock(lock)


def test_an_advisory_is_found_exactly_for_the_versions_its_range_names(database):
    # the database's own entry, read here independently: PyYAML's FullLoader code execution, fixed in 5.3.1
    entry = next(e for e in database["pyyaml"] if e["cve"] == "CVE-2020-1747")
    assert entry["specs"] == ["<5.3.1"]
    found = {f.advisory_id for f in audit_deps.audit({"pyyaml": "5.3"}, database)}
    assert entry["id"] in found
    assert entry["id"] not in {f.advisory_id for f in audit_deps.audit({"pyyaml": "5.3.1"}, database)}
    # several ranges: a version between two of them is not affected (">=1.0,<1.1" style sets parsed as sets)
    assert audit_deps.affects([">=1.0,<1.2", ">=2.0,<2.0.3"], "2.0.2")
    assert not audit_deps.affects([">=1.0,<1.2", ">=2.0,<2.0.3"], "1.5")
    assert not audit_deps.affects(["<1.0"], "not-a-version")


def test_the_script_fails_on_a_finding_and_names_it(tmp_path):
    lock = tmp_path / "old.lock"
    lock.write_text("pyyaml==5.3\nnumpy==2.3.0\n", encoding="utf-8")
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "audit_deps.py"), "--lock", str(lock)],
                         capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    assert "| pyyaml | 5.3 |" in run.stdout and "CVE-2020-1747" in run.stdout
    assert "2 pinned distributions" in run.stdout


def test_the_lock_has_no_findings_and_the_docs_show_this_report(database):
    pins = audit_deps.read_lock(audit_deps.LOCK)
    snapshot = audit_deps.load_database()[1]
    findings = audit_deps.audit(pins, database)
    assert findings == [], findings
    rendered = audit_deps.render(findings, pins, database, snapshot)
    assert audit_deps.docs_report(audit_deps.DOCS.read_text(encoding="utf-8")) == rendered, \
        "docs/security.md's dependency audit is stale: python scripts/audit_deps.py --docs"
