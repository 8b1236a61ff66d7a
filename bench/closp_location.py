"""GeoCLOSP beside CLOSP, class by class: where the location encoder helps retrieval and where it does not.

Reads the newest registered versions of the two models of a ``closp`` pipeline run from an MLflow
store (``make pipeline PAPER=closp`` writes both) and prints, per eval set, each class's nDCG
(``<set>.ndcg_class.<class>``: the mean nDCG@k of the label-set queries holding that class) for
CLOSP, GeoCLOSP and their difference, event classes (whose occurrence depends on location in the
generated data) first, then the set's overall nDCG and the text-bridged model's naive control.

    python bench/closp_location.py [--tracking-uri sqlite:///mlflow/mlflow.db]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mlflow import MlflowClient  # noqa: E402

from rsvl.data.labels import EVENT_CLASSES  # noqa: E402
from rsvl.evaluate.runner import metric_slug  # noqa: E402

CLASS_PART = ".ndcg_class."


def newest_metrics(client: MlflowClient, name: str) -> tuple[str, dict[str, float]]:
    """The newest version of registered model ``name`` and its run's metrics.

    Raises:
        SystemExit: The model is not registered in this store.
    """
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        raise SystemExit(f"no registered model {name!r} in {client.tracking_uri}; run `make pipeline PAPER=closp`")
    newest = max(versions, key=lambda version: int(version.version))
    return newest.version, client.get_run(newest.run_id).data.metrics


def table(closp: dict[str, float], geo: dict[str, float]) -> list[str]:
    """The per-set, per-class rows: class, CLOSP, GeoCLOSP, GeoCLOSP − CLOSP."""
    events = {metric_slug(name) for name in EVENT_CLASSES}
    sets = sorted({key.split(".")[0] for key in closp if CLASS_PART in key and key.count(".") == 2})
    lines = []
    for name in sets:
        classes = sorted({key.split(".")[2] for key in closp if key.startswith(name + CLASS_PART)},
                         key=lambda slug: (slug not in events, slug))
        lines.append(f"\n{name}: nDCG per class (mean over the label-set queries holding it)")
        lines.append(f"  {'class':<22}{'CLOSP':>8}{'GeoCLOSP':>10}{'geo-closp':>11}")
        for slug in classes:
            key = f"{name}{CLASS_PART}{slug}"
            a, b = closp.get(key), geo.get(key)
            diff = f"{b - a:+.3f}" if a is not None and b is not None else "-"
            tag = " (event)" if slug in events else ""
            lines.append(f"  {slug + tag:<22}{_fmt(a):>8}{_fmt(b):>10}{diff:>11}")
        overall = next((key for key in closp if key.startswith(name + ".ndcg_at_")), None)
        if overall:
            naive = _fmt(closp.get(f"naive.{overall}"))
            lines.append(f"  {'all queries':<22}{_fmt(closp[overall]):>8}{_fmt(geo.get(overall)):>10}"
                         f"{_fmt_diff(closp[overall], geo.get(overall)):>11}   naive {naive}")
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _fmt_diff(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{b - a:+.3f}"


def main(argv: list[str] | None = None) -> int:
    """Print the table; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow/mlflow.db")
    parser.add_argument("--closp", default="closp", help="registered name of the CLOSP model")
    parser.add_argument("--geoclosp", default="geoclosp", help="registered name of the GeoCLOSP model")
    args = parser.parse_args(argv)
    client = MlflowClient(args.tracking_uri)
    closp_version, closp = newest_metrics(client, args.closp)
    geo_version, geo = newest_metrics(client, args.geoclosp)
    print(f"{args.closp} v{closp_version} beside {args.geoclosp} v{geo_version} ({args.tracking_uri})")
    print("\n".join(table(closp, geo)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
