"""The closing summary of a local pipeline run, read back from the registry and the tracking store.

Per track: the version the run registered and its aliases, the gate's decision with its reasons,
and a table of the headline metrics (the gate's metrics, each eval set's headline metric, for
retrieval its standard-protocol ``std_mR`` too, VQA's overall accuracy): the candidate beside the
champion and beside the comparisons the evaluate step scored on the same sets (the untuned ``base``
model first, then a progressive plan's ablations, e.g. ``sar_only``, and VQA's ``majority`` and
``random`` answers); then, with a VQA step, its table of every model (candidate, ablations, base,
majority and random answers) on every set, per question type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

from pipelines.console import PHASES, StepResult
from rsvl.config import UNTUNED, RunConfig
from rsvl.config.evaluate import STANDARD_PREFIX, EvalSet

HEADLINE = {"retrieval": "mR", "captioning": "CIDEr", "zero_shot": "zs_top1", "cross_sensor": "cross_mR",
            "localisation": "Rmi"}
"""The metric shown for an eval set, by task (``ndcg`` shows its ``ndcg_at_<k>``)."""
BESIDE = {"retrieval": f"{STANDARD_PREFIX}mR"}
"""A second row for a task's headline: retrieval's standard-protocol mR, comparable with the literature."""

COST_ROWS = ("trainable_params", "fit_seconds")
"""Rows added when an ablation trains other parameters (``rsvl.steps.training.plan_costs``)."""
VQA_HEADLINE = "vqa.overall"
VQA_TYPES = ("presence", "count", "position", "land", "land_sea", "overall")
"""The VQA table's columns (:data:`rsvl.vqa.QUESTION_TYPES`, then overall), those any set has."""


def reranked_headlines(eval_set: EvalSet) -> list[str]:
    """The retrieval set's extra mR rows: ``sar_mR``, ``fused_mR``, ``fused_sar_mR`` as its settings ask."""
    names = ["sar_mR"] if eval_set.sar_k is not None else []
    if eval_set.fusion is not None:
        names += ["fused_mR"] + (["fused_sar_mR"] if eval_set.sar_k is not None else [])
    return names


def headline_metrics(cfg: RunConfig) -> list[str]:
    """The metrics a person reads first for ``cfg``'s track, in order, without repeats.

    The gate's floors and improvement rules first (the decision hangs on them), then each eval
    set's headline metric (a retrieval set's ``mR`` followed by its ``std_mR``, then its ``sar_mR``,
    ``fused_mR`` and ``fused_sar_mR`` where it scores them), then
    ``vqa.overall`` when the track has a VQA step.
    """
    names = [*cfg.gate.minimums, *cfg.gate.min_improvement]
    for eval_set in cfg.evaluate.sets:
        for task in eval_set.tasks:
            metric = f"ndcg_at_{eval_set.ndcg_k}" if task == "ndcg" else HEADLINE.get(task)
            names += [f"{eval_set.name}.{name}" for name in (metric, BESIDE.get(task)) if name]
            if task == "retrieval":  # iEBAKER's fused and SAR re-ranked scores of the same matrices
                names += [f"{eval_set.name}.{name}" for name in reranked_headlines(eval_set)]
    if cfg.vqa is not None:
        names.append(VQA_HEADLINE)
    if any(ablation.trainable is not None for ablation in cfg.train.ablations):
        names += list(COST_ROWS)  # controls that train other parameters: what each costs
    return list(dict.fromkeys(names))


def comparisons(metrics: Mapping[str, float], shown: Iterable[str]) -> dict[str, dict[str, float]]:
    """The comparison models scored beside the candidate: ``{comparison: {metric: value}}``.

    A comparison's value of metric ``a.b`` is the metric with one more part, its name, inserted
    anywhere: ``sar_only.sar_test.mR`` (an ablation), ``base.sar_test.CIDEr`` (the untuned model),
    ``vqa.majority.overall`` (a VQA baseline).

    Args:
        metrics: The candidate run's metrics.
        shown: The metrics the table shows.

    Returns:
        The comparisons in the order found, except that ``base`` comes first (the gain over it is
        the headline).
    """
    found: dict[str, dict[str, float]] = {}
    for metric in shown:
        parts = metric.split(".")
        for key, value in metrics.items():
            other = key.split(".")
            if len(other) != len(parts) + 1:
                continue
            for at in range(len(other)):
                if other[:at] + other[at + 1:] == parts:
                    found.setdefault(other[at], {})[metric] = value
                    break
    return dict(sorted(found.items(), key=lambda item: item[0] != UNTUNED))


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1e5:  # parameter counts
        return f"{value / 1e6:.2f}M"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def metrics_table(candidate: Mapping[str, float], champion: Mapping[str, float] | None, champion_version: str | None,
                  shown: list[str], candidate_version: str = "") -> list[str]:
    """The table lines: one row per shown metric; candidate, champion and comparison columns.

    Args:
        candidate: The candidate run's metrics.
        champion: The champion run's metrics (``None``: no champion).
        champion_version: The champion's version.
        shown: The rows (metrics missing from the candidate are left out).
        candidate_version: The candidate's version, for its column header.
    """
    rows = [metric for metric in shown if metric in candidate]
    if not rows:
        return ["  (no metrics logged)"]
    others = comparisons(candidate, rows)
    width = max(len(metric) for metric in rows) + 2
    header = ["candidate" + (f" v{candidate_version}" if candidate_version else ""),
              f"champion v{champion_version}" if champion is not None else "champion", *others]
    widths = [max(len(name), 9) for name in header]
    lines = ["  " + "metric".ljust(width) + "  ".join(name.rjust(w) for name, w in zip(header, widths))]
    for metric in rows:
        values = [candidate.get(metric), (champion or {}).get(metric), *(others[name].get(metric) for name in others)]
        lines.append("  " + metric.ljust(width) + "  ".join(_number(v).rjust(w) for v, w in zip(values, widths)))
    return lines


def verdict_lines(cfg: RunConfig, candidate: Mapping[str, float]) -> list[str]:
    """Say, per comparison model (the untuned base, each ablation), whether the candidate is ahead.

    One line each, over every retrieval set's headline ``mR`` both were scored on, so a run where
    progressive transfer does not beat its SAR-only control says so in words, not only in the table.

    Args:
        cfg: The track's config (eval sets, ``compare_base``, ablations).
        candidate: The candidate run's metrics.

    Returns:
        Lines such as ``candidate vs sar_only: sar_test.mR 28.50 vs 31.10 (-2.60): ahead on 0 of 1 sets``.
    """
    names = ([UNTUNED] if cfg.evaluate.compare_base else []) + [ablation.name for ablation in cfg.train.ablations]
    metrics = [f"{s.name}.{HEADLINE['retrieval']}" for s in cfg.evaluate.sets if "retrieval" in s.tasks]
    lines = []
    for name in names:
        pairs = [(metric, candidate[metric], candidate[f"{name}.{metric}"]) for metric in metrics
                 if metric in candidate and f"{name}.{metric}" in candidate]
        if pairs:
            parts = ", ".join(f"{metric} {ours:.2f} vs {theirs:.2f} ({ours - theirs:+.2f})" for metric, ours, theirs in pairs)
            ahead = sum(ours > theirs for _, ours, theirs in pairs)
            lines.append(f"  candidate vs {name}: {parts}: ahead on {ahead} of {len(pairs)} sets")
    return lines


def vqa_table(metrics: Mapping[str, float]) -> list[str]:
    """The VQA step's models × sets table from ``vqa.<set>.<model>.<type>`` metrics (none: no lines).

    Rows: per set (in the order found) each model and baseline (``candidate``, comparisons,
    ``majority``, ``random``, in the order found); columns: the question types any set has, then
    ``overall``; accuracy in percent, ``-`` where a set asks no question of a type.
    """
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == "vqa" and parts[3] in VQA_TYPES:
            cells.setdefault((parts[1], parts[2]), {})[parts[3]] = value
    if not cells:
        return []
    kinds = [kind for kind in VQA_TYPES if any(kind in row for row in cells.values())]
    width = max(len(f"{s} {m}") for s, m in cells) + 2
    lines = ["  VQA accuracy (%), every model on every set:",
             "  " + "set model".ljust(width) + "  ".join(kind.rjust(8) for kind in kinds)]
    for set_name in dict.fromkeys(s for s, _ in cells):
        for (name, model), row in cells.items():
            if name == set_name:
                values = ["-" if kind not in row else f"{100 * row[kind]:.1f}" for kind in kinds]
                lines.append("  " + f"{name} {model}".ljust(width) + "  ".join(v.rjust(8) for v in values))
    return lines


def funnel_line(metrics: Mapping[str, float]) -> list[str]:
    """The data funnel in one line, from the ``funnel.*`` counts the train step logged (none without a funnel).

    Returns:
        ``["  funnel: 180 in; keyword -12, decode -5, ...; 120 kept"]`` or ``[]``.
    """
    from rsvl.data.funnel import STAGES

    if "funnel.rows_in" not in metrics:
        return []
    removed = ", ".join(f"{stage} -{int(metrics[f'funnel.{stage}.removed'])}" for stage in STAGES
                        if f"funnel.{stage}.removed" in metrics)
    return [f"  funnel: {int(metrics['funnel.rows_in'])} in; {removed}; {int(metrics['funnel.rows_kept'])} kept"]


def ladder_lines(cfg: RunConfig, candidate: Mapping[str, float]) -> list[str]:
    """The ablation ladder (``evaluate.ladder``): one row per step, its model's value and the gain over the row above.

    Args:
        cfg: The track's config.
        candidate: The candidate run's metrics (an ablation's value of ``m`` is ``<ablation>.m``).

    Returns:
        A heading and one line per step (``-`` where the run has no such value), or nothing without a ladder.
    """
    if not cfg.evaluate.ladder:
        return []
    width = max(len(step.label) for step in cfg.evaluate.ladder) + 2
    lines = ["  ablation ladder (same data, start and steps; each row one model):"]
    previous = None
    for step in cfg.evaluate.ladder:
        key = step.metric if step.model == "candidate" else f"{step.model}.{step.metric}"
        value = candidate.get(key)
        gain = f" ({value - previous:+.2f})" if value is not None and previous is not None else ""
        lines.append(f"    {step.label.ljust(width)}{_number(value).rjust(8)}{gain.ljust(10)}  {key}")
        previous = value if value is not None else previous
    return lines


def _run_metrics(client, run_id: str | None) -> dict[str, float]:
    return dict(client.get_run(run_id).data.metrics) if run_id else {}


def track_lines(cfg: RunConfig, client, version: int | None = None) -> list[str]:
    """The summary of one track: registered version and aliases, gate decision and reasons, metrics, VQA tables.

    Args:
        cfg: The track's config (registered name, gate, eval sets).
        client: A registry client on the track's tracking store.
        version: The version this run registered (default: the latest version).
    """
    name = cfg.registry.model_name
    lines = [f"--- track {cfg.track}: {name} ---"]
    if version is None:
        versions = [int(v.version) for v in client.search_model_versions(f"name = '{name}'")]
        if not versions:
            return [*lines, f"nothing registered under {name!r}"]
        version = max(versions)
    candidate = client.get_model_version(name, str(version))
    aliases = client.get_registered_model(name).aliases
    champion_version = aliases.get("champion")
    champion = (client.get_model_version(name, str(champion_version)) if champion_version else None)
    tags = candidate.tags
    own = ", ".join(sorted(candidate.aliases)) or "none"
    lines.append(f"registered: {name} v{candidate.version} (aliases: {own}); "
                 f"champion: v{champion_version or 'none'}; candidate: v{aliases.get('candidate', 'none')}")
    lines.append(f"gate: {tags.get('gate.decision', 'not run')}: {tags.get('gate.reasons', '') or '-'}")
    metrics = _run_metrics(client, candidate.run_id)
    lines += metrics_table(metrics, _run_metrics(client, champion.run_id) if champion is not None else None,
                           champion_version, headline_metrics(cfg), str(candidate.version))
    return lines + funnel_line(metrics) + ladder_lines(cfg, metrics) + verdict_lines(cfg, metrics) + vqa_table(metrics)


def step_time_lines(results: Sequence[StepResult], seconds: float) -> list[str]:
    """The time table: each step's total and its ``start-up``, ``body`` and ``exit`` seconds, then the run's.

    Args:
        results: The finished steps, in order (:attr:`pipelines.console.StepConsole.results`).
        seconds: Wall time of the whole run (the orchestration between steps included).

    Returns:
        Lines to print; a cached step shows its status and no phases.
    """
    lines = ["step times (s): start-up = a fresh interpreter and KFP's executor; body = the component, "
             "its imports included; exit = outputs written back",
             f"  {'step':<20} {'status':<7} {'total':>7} " + " ".join(f"{phase:>8}" for phase in PHASES)]
    for result in results:
        phases = " ".join(f"{result.phases[phase]:8.1f}" if phase in result.phases else f"{'-':>8}"
                          for phase in PHASES)
        lines.append(f"  {result.label:<20} {result.status:<7} {result.seconds:7.1f} {phases}")
    steps = sum(result.seconds for result in results)
    sums = " ".join(f"{sum(r.phases.get(phase, 0.0) for r in results):8.1f}" for phase in PHASES)
    lines.append(f"  {'all steps':<20} {'':<7} {steps:7.1f} {sums}")
    lines.append(f"  {'run (wall)':<20} {'':<7} {seconds:7.1f}")
    return lines


def print_summary(tracks: dict[str, RunConfig], local_root: Path, seconds: float, log_dir: Path | None = None,
                  versions: Mapping[str, int] | None = None, results: Sequence[StepResult] = ()) -> None:
    """Print, per track, the version, aliases, gate decision and reasons and the metrics; then where things are.

    Each track is read from its own tracking store (``mlflow.tracking_uri`` may differ per track).

    Args:
        tracks: The run's config of each track (``main`` first).
        local_root: The KFP local pipeline root (task outputs).
        seconds: Wall time of the run.
        log_dir: Where the run's step logs are, if any.
        versions: The version each track's register step returned (default: each name's latest).
        results: The finished steps; with them the summary ends with :func:`step_time_lines`.
    """
    from rsvl.mlflow_store import resolve_tracking_uri
    from rsvl.model_registry import registry_client

    first = next(iter(tracks.values()))
    print(f"=== {first.paper} pipeline finished in {seconds / 60:.1f} min ===")
    uris = {name: resolve_tracking_uri(cfg.mlflow.tracking_uri) for name, cfg in tracks.items()}
    for name, cfg in tracks.items():
        print("\n".join(track_lines(cfg, registry_client(uris[name]), (versions or {}).get(name))))
    print(f"task outputs: {local_root.resolve()}" + (f"; step logs: {log_dir}" if log_dir else ""))
    if results:
        print("\n".join(step_time_lines(results, seconds)))
    for uri in dict.fromkeys(uris.values()):
        print(f"MLflow UI: .venv/bin/mlflow ui --backend-store-uri {uri}")
