"""The gate's Markdown report: decision, reasons and a candidate-vs-champion table."""

from __future__ import annotations

from rsvl import markdown
from rsvl.gate.rules import GateDecision

ALREADY_CHAMPION = "already is the champion"
"""The report title's words when the candidate was the champion before the gate ran (nothing is scored)."""


def gate_markdown(decision: GateDecision, model_name: str, candidate_version: str) -> str:
    """Render the decision for people (the Kubeflow UI's Markdown output, an MLflow artifact).

    Args:
        decision: The gate's decision.
        model_name: The registered model.
        candidate_version: The candidate's version.

    Returns:
        Markdown text.
    """
    if decision.champion_version == candidate_version and decision.champion is None and not decision.promote:
        return (f"# Gate: `{model_name}` version {candidate_version} {ALREADY_CHAMPION}\n\n"
                "Nothing was scored: the `champion` alias already points at this version (a re-run with "
                "nothing changed), so it stays as it is.\n")
    verdict = "PROMOTED to champion" if decision.promote else "NOT promoted"
    against = (f"champion version {decision.champion_version}" if decision.champion is not None
               else "no champion (first model: absolute minimums only)")
    lines = [
        f"# Gate: `{model_name}` version {candidate_version} {verdict}",
        "",
        f"Compared with {against}, on the same pinned evaluation data in the same run.",
        "",
        "## Rules",
        "",
        *[f"- {markdown.text(reason)}" for reason in decision.reasons],
        "",
        "## Metrics",
        "",
    ]
    if decision.champion is None:
        lines += ["| metric | candidate |", "|---|---:|"]
        lines += [f"| {markdown.cell(m)} | {v:.4f} |" for m, v in sorted(decision.candidate.items())]
    else:
        lines += ["| metric | candidate | champion | change |", "|---|---:|---:|---:|"]
        for metric, value in sorted(decision.candidate.items()):
            if metric in decision.deltas:
                lines.append(f"| {markdown.cell(metric)} | {value:.4f} | {decision.champion[metric]:.4f} | "
                             f"{decision.deltas[metric]:+.4f} |")
            else:
                lines.append(f"| {markdown.cell(metric)} | {value:.4f} | n/a | n/a |")
    return "\n".join(lines) + "\n"
