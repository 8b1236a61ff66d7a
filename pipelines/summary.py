"""The closing summary of a local pipeline run, read back from the registry and the tracking store."""

from __future__ import annotations

from pathlib import Path

from rsvl.config import RunConfig

HIDDEN_METRICS = ("zs_class",)
"""Metric-name parts left out of the summary (per-class tables; they are in the report)."""


def _print_track(cfg: RunConfig, client) -> None:
    name = cfg.registry.model_name
    versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    print(f"\n--- track {cfg.track}: {name} ---")
    if not versions:
        print(f"nothing registered under {name!r}")
        return
    latest = client.get_model_version(name, versions[-1].version)
    aliases = client.get_registered_model(name).aliases
    run = client.get_run(latest.run_id) if latest.run_id else None
    if run is not None:
        shown = {k: v for k, v in sorted(run.data.metrics.items())
                 if "." in k and not any(part in k for part in HIDDEN_METRICS)}
        print("metrics of the latest registered model's run:")
        for key, value in shown.items():
            print(f"  {key:<36} {value:8.3f}")
    tags = latest.tags
    print(f"registered: {name} v{latest.version} (aliases: {', '.join(sorted(latest.aliases)) or 'none'})")
    print(f"gate: {tags.get('gate.decision', 'not run')}: {tags.get('gate.reasons', '')}")
    print(f"champion: v{aliases.get('champion', 'none')}; candidate: v{aliases.get('candidate', 'none')}")


def print_summary(tracks: dict[str, RunConfig], local_root: Path, seconds: float) -> None:
    """Print, per track, the metrics, the gate decision, the registered version and its aliases; then where things are.

    Each track is read from its own tracking store (``mlflow.tracking_uri`` may differ per track).

    Args:
        tracks: The run's config of each track (``main`` first).
        local_root: The KFP local pipeline root (task outputs).
        seconds: Wall time of the run.
    """
    from rsvl.mlflow_store import resolve_tracking_uri
    from rsvl.registry import registry_client

    first = next(iter(tracks.values()))
    print(f"\n=== {first.paper} pipeline finished in {seconds / 60:.1f} min ===")
    uris = {name: resolve_tracking_uri(cfg.mlflow.tracking_uri) for name, cfg in tracks.items()}
    for name, cfg in tracks.items():
        _print_track(cfg, registry_client(uris[name]))
    print(f"\ntask outputs: {local_root.resolve()}")
    for uri in dict.fromkeys(uris.values()):
        print(f"MLflow UI: .venv/bin/mlflow ui --backend-store-uri {uri}")
