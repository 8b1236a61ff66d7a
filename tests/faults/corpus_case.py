"""One case of the bad-input corpus: the input it writes, the user's commands, the outcome it must get.

A :class:`Case` writes its broken input (plus enough good rows around it) into a folder of its own
and returns the commands a user would type, as argument lists: ``["rsvl", ...]`` runs the ``rsvl``
command line (:data:`rsvl.cli.app`, in this interpreter), ``["pipeline", ...]`` runs
``python -m pipelines.run``. :func:`run_case` runs them in order and stops at the first failure;
:func:`check` compares what happened with the case's :class:`Expect`:

* an **error**: a command exits non-zero and its message matches ``error`` (a regex that names the
  file, row or field and the rule broken), without a traceback;
* a **quarantine**: every command succeeds, the dataset at ``dataset`` holds a quarantine record of
  ``stage``/``rule``, and the counts add up: ``rows_in == kept + quarantined`` (manifest rows a
  reader returns, and distinct quarantined source records or rows, :func:`rsvl.data.filtering.row_counts`);
* **kept**: every command succeeds and no row is lost (an input that is odd but valid, such as a
  palette PNG, converted on the way in).

Messages in outcomes have the case folder replaced by ``<case>`` and the checkout by ``<repo>``, so the README table is the same
on every machine.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ERROR, QUARANTINE, KEPT = "error", "quarantine", "kept"


@dataclass(frozen=True)
class Expect:
    """The outcome a case must get.

    Attributes:
        outcome: ``error``, ``quarantine`` or ``kept``.
        error: Regex the failing command's message must match (``error`` only).
        stage: Quarantine stage of the record (``ingest``, ``validate``, ...; ``quarantine`` only).
        rule: Quarantine rule of the record (``quarantine`` only).
        rows_in: Source rows (or records) the input holds.
        kept: Rows a reader of ``dataset`` must return.
        quarantined: Quarantined rows or records ``dataset`` must hold.
        dataset: The output dataset folder, relative to the case folder (``None``: nothing to read).
    """

    outcome: str
    error: str | None = None
    stage: str | None = None
    rule: str | None = None
    rows_in: int = 0
    kept: int = 0
    quarantined: int = 0
    dataset: str | None = "out"


@dataclass(frozen=True)
class Case:
    """One kind of bad input.

    Attributes:
        kind: Short unique name (``image-zero-byte``): the folder it is written to and the table's key.
        group: ``images``, ``arrays``, ``tables``, ``captions``, ``annotations``, ``archives`` or ``config``.
        what: One line for the README table: what is wrong with the input.
        build: Writes the input under the given case folder; returns the commands to run, in order
            (paths in them absolute or relative to the case folder, which is the working directory).
        expect: The outcome it must get.
    """

    kind: str
    group: str
    what: str
    build: Callable[[Path], list[list[str]]]
    expect: Expect


@dataclass
class Outcome:
    """What running a case did."""

    kind: str
    outcome: str
    message: str = ""
    exit_code: int = 0
    command: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    kept: int = 0
    quarantined: int = 0


def _invoke(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run one command in this interpreter from ``cwd``; return its exit code and everything it printed."""
    out = io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            if argv[0] == "rsvl":
                from rsvl.cli import app

                app(argv[1:], prog_name="rsvl", standalone_mode=True)
                code = 0
            elif argv[0] == "pipeline":
                from pipelines.run import main

                main(argv[1:])
                code = 0
            else:
                raise ValueError(f"unknown command {argv[0]!r}: use 'rsvl' or 'pipeline'")
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if isinstance(done.code, str):
                print(done.code)
    return code, out.getvalue()


REPO = Path(__file__).resolve().parents[2]


def _relative(text: str, case_dir: Path) -> str:
    """``text`` with the case folder written ``<case>`` and the checkout ``<repo>`` (the same on every machine)."""
    text = text.replace(str(case_dir.resolve()), "<case>").replace(str(case_dir), "<case>")
    return text.replace(str(REPO), "<repo>")


def short_rule(rule: str) -> str:
    """The rule's own name: a great-expectations record ``expect_...[image_decodes]`` is ``image_decodes``."""
    return rule[rule.index("[") + 1: -1] if rule.endswith("]") and "[" in rule else rule


def run_case(case: Case, case_dir: Path) -> Outcome:
    """Write ``case``'s input into ``case_dir`` and run its commands there.

    Args:
        case: The case.
        case_dir: An empty folder of its own.

    Returns:
        The :class:`Outcome`; ``message`` is the failing command's output (or the last one's), with
        ``case_dir`` written as ``<case>``.
    """
    case_dir.mkdir(parents=True, exist_ok=True)
    commands = case.build(case_dir)
    code, printed, last = 0, "", []
    for argv in commands:
        last = argv
        code, printed = _invoke(argv, case_dir)
        if code != 0:
            break
    message = _relative(printed, case_dir).strip()
    outcome = Outcome(case.kind, ERROR if code else KEPT, message, code, last)
    dataset = case_dir / case.expect.dataset if case.expect.dataset else None
    if dataset is not None and (dataset / "manifest.parquet").exists():
        from rsvl.data.filtering import row_counts
        from rsvl.data.store import read_quarantine

        counts = row_counts(dataset)
        outcome.kept, outcome.quarantined = counts.kept, counts.quarantined
        records = read_quarantine(dataset)[["stage", "where", "rule", "reason"]].to_dict("records")
        outcome.records = [{key: _relative(str(value), case_dir) for key, value in record.items()} for record in records]
        if not code and outcome.quarantined:
            outcome.outcome = QUARANTINE
    return outcome


def check(case: Case, outcome: Outcome) -> list[str]:
    """Compare an outcome with the case's expectation.

    Returns:
        What is wrong, one line each (empty when the case passed).
    """
    want, problems = case.expect, []
    if outcome.outcome != want.outcome:
        problems.append(f"expected {want.outcome}, got {outcome.outcome}: {outcome.message[-600:]}")
        return problems
    if want.outcome == ERROR:
        if not want.error or not re.search(want.error, outcome.message, re.S):
            problems.append(f"error message does not match {want.error!r}: {outcome.message[-600:]}")
        if "Traceback" in outcome.message:
            problems.append("the error came with a traceback instead of a clear message")
        return problems
    if want.outcome == QUARANTINE and not any(
            record["stage"] == want.stage and short_rule(record["rule"]) == want.rule for record in outcome.records):
        problems.append(f"no {want.stage}/{want.rule} quarantine record; records: {outcome.records}")
    if (outcome.kept, outcome.quarantined) != (want.kept, want.quarantined):
        problems.append(f"kept/quarantined {outcome.kept}/{outcome.quarantined}, expected {want.kept}/{want.quarantined}")
    if want.rows_in != want.kept + want.quarantined:
        problems.append(f"the case's counts do not add up: {want.rows_in} in, {want.kept} kept, {want.quarantined} quarantined")
    return problems


def describe(case: Case, outcome: Outcome) -> str:
    """One table cell: the outcome as a user sees it (first line of the error, or the quarantine record)."""
    if outcome.outcome == ERROR:
        text = outcome.message
        text = text[text.index("error: ") + len("error: "):] if "error: " in text else text  # the CLI's own line on
        return f"error: {text}"
    if outcome.outcome == QUARANTINE:
        record = next((r for r in outcome.records
                       if (r["stage"], short_rule(r["rule"])) == (case.expect.stage, case.expect.rule)), outcome.records[0])
        return (f"quarantined ({record['stage']}, `{short_rule(record['rule'])}`): {record['reason']}; "
                f"{case.expect.rows_in} in = {outcome.kept} kept + {outcome.quarantined} quarantined")
    return f"kept: {outcome.kept} of {case.expect.rows_in} rows"


def _cell(text: str, limit: int = 220) -> str:
    """Make ``text`` safe for one Markdown table cell: one line, pipes and angle brackets escaped."""
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def table(cases: list[Case], outcomes: dict[str, Outcome]) -> str:
    """Render the README's kind → outcome table of a corpus run (``command``: the failing or last one run)."""
    rows = ["| group | kind | input | command | outcome |", "|---|---|---|---|---|"]
    for case in cases:
        outcome = outcomes[case.kind]
        command = " ".join(word for word in outcome.command[:3] if not word.startswith("-"))
        rows.append(f"| {case.group} | `{case.kind}` | {_cell(case.what)} | {_cell(command) or '—'} | "
                    f"{_cell(describe(case, outcome))} |")
    return "\n".join(rows) + "\n"
