"""The closing summary of a local pipeline run, read back from the registry and the tracking store."""

from __future__ import annotations

from pathlib import Path

from rsvl.config import RunConfig


def print_summary(cfg: RunConfig, local_root: Path, seconds: float) -> None:
    """Print metrics, the gate decision, the registered version and aliases, and where things are.

    Args:
        cfg: The run's config.
        local_root: The KFP local pipeline root (task outputs).
        seconds: Wall time of the run.
    """
    from rsvl.mlflow_store import resolve_tracking_uri
    from rsvl.registry import registry_client

    uri = resolve_tracking_uri(cfg.mlflow.tracking_uri)
    client = registry_client(uri)
    name = cfg.registry.model_name
    versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    latest = client.get_model_version(name, versions[-1].version) if versions else None
    aliases = client.get_registered_model(name).aliases if latest else {}
    print(f"\n=== {cfg.paper} pipeline finished in {seconds / 60:.1f} min ===")
    if latest is None:
        print(f"nothing registered under {name!r}")
        return
    run = client.get_run(latest.run_id) if latest.run_id else None
    if run is not None:
        shown = {k: v for k, v in sorted(run.data.metrics.items()) if "." in k and "zs_class" not in k}
        print("metrics of the latest registered model:")
        for key, value in shown.items():
            print(f"  {key:<28} {value:8.3f}")
    tags = latest.tags
    print(f"registered: {name} v{latest.version} (aliases: {', '.join(sorted(latest.aliases)) or 'none'})")
    print(f"gate: {tags.get('gate.decision', 'not run')}: {tags.get('gate.reasons', '')}")
    print(f"champion: v{aliases.get('champion', 'none')}; candidate: v{aliases.get('candidate', 'none')}")
    print(f"task outputs: {local_root.resolve()}")
    print(f"MLflow UI: .venv/bin/mlflow ui --backend-store-uri {uri}")
