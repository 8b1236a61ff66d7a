"""Write, run and tabulate the bad-input corpus (``tests/faults/``).

    python tests/faults/make_corpus.py OUT            # write every case's input under OUT/<kind>/
    python tests/faults/make_corpus.py OUT --run      # ... run each through its commands, print the table
    python tests/faults/make_corpus.py OUT --readme   # ... and rewrite the README's table from that run

The cases live in ``cases_media.py`` (images, band arrays, tables, archives) and ``cases_text.py``
(captions, annotations, configuration); ``test_corpus.py`` runs them all and checks the README
table is the one this script writes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # the pipelines package, for `pipeline ...` cases
sys.path.insert(2, str(Path(__file__).resolve().parents[1]))  # tests/: shared helpers (forged_media)

from corpus_case import Case, Outcome, check, run_case, table  # noqa: E402

from rsvl.markdown import generated_section, with_generated_section  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- corpus table: start (python tests/faults/make_corpus.py OUT --readme) -->", "<!-- corpus table: end -->"


def all_cases() -> list[Case]:
    """Every case, media cases first; kinds are unique."""
    import cases_media
    import cases_text

    cases = [*cases_media.CASES, *cases_text.CASES]
    kinds = [case.kind for case in cases]
    duplicated = sorted({kind for kind in kinds if kinds.count(kind) > 1})
    if duplicated:
        raise ValueError(f"corpus kinds named twice: {duplicated}")
    return cases


def run_all(out: Path, cases: list[Case], progress=print) -> dict[str, Outcome]:
    """Run every case in ``out/<kind>`` and return the outcomes by kind."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    outcomes = {}
    for number, case in enumerate(cases, 1):
        outcomes[case.kind] = outcome = run_case(case, out / case.kind)
        problems = check(case, outcome)
        progress(f"[{number}/{len(cases)}] {case.kind}: {outcome.outcome}{' — ' + '; '.join(problems) if problems else ''}")
    return outcomes


def readme_with(text: str, rendered: str) -> str:
    """Return README ``text`` with the corpus table between its markers replaced by ``rendered``."""
    return with_generated_section(text, START, END, rendered, "README.md")


def readme_table(text: str) -> str:
    """Return the corpus table the README holds now."""
    return generated_section(text, START, END)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="empty folder for the cases")
    parser.add_argument("--run", action="store_true", help="run each case and print the table")
    parser.add_argument("--readme", action="store_true", help="run each case and rewrite README.md's table")
    parser.add_argument("--only", default="", help="only the kinds containing this text (not with --readme)")
    args = parser.parse_args(argv)
    cases = [case for case in all_cases() if args.only in case.kind] if not args.readme else all_cases()
    if not (args.run or args.readme):
        for case in cases:
            (args.out / case.kind).mkdir(parents=True, exist_ok=True)
            case.build(args.out / case.kind)
        print(f"{len(cases)} cases written under {args.out}")
        return 0
    outcomes = run_all(args.out, cases)
    rendered = table(cases, outcomes)
    print(rendered)
    failed = [case.kind for case in cases if check(case, outcomes[case.kind])]
    if args.readme:
        README.write_text(readme_with(README.read_text(), rendered))
        print(f"rewrote the corpus table in {README}")
    if failed:
        print(f"{len(failed)} cases did not get their expected outcome: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
