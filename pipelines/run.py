"""Run, compile or submit a paper's pipeline: ``python -m pipelines.run --paper sar_text``.

``--target local`` (the default) runs the whole pipeline with the KFP local runner in this
interpreter (``SubprocessRunner(use_venv=False)``), task outputs cached under
``build/kfp_local/``, MLflow on the config's sqlite store, local Ray, the local DVC remote and the
embedded default dataset (generated if missing); it ends with a summary read back from the
registry and the tracking store. ``--target compile`` writes ``build/<paper>.yaml`` for upload in
the Kubeflow UI; ``--target kfp`` compiles and submits to ``--host``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time
from pathlib import Path

LOCAL_ROOT = Path("build/kfp_local")
BUILD = Path("build")
RSVL_ERROR = re.compile(r"rsvl\.errors\.\w+: (.*)$")
FAILED_TASK = re.compile(r"Inner task failed: '([^']+)'")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class PipelineFailed(RuntimeError):
    """A pipeline step failed; the message names the step and the cause."""


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.run", description=__doc__.splitlines()[0])
    parser.add_argument("--paper", default="sar_text")
    parser.add_argument("--profile", default=None, help="local or cluster (default: local for --target local, "
                                                        "cluster otherwise)")
    parser.add_argument("--target", choices=("local", "compile", "kfp"), default="local")
    parser.add_argument("--host", default=os.environ.get("KFP_HOST"), help="Kubeflow Pipelines endpoint (kfp)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override compiled into the pipeline")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="run parameter: data_version, epochs, lr, backend")
    parser.add_argument("--no-cache", action="store_true", help="run every step even if its inputs are unchanged")
    return parser.parse_args(argv)


def _run_parameters(items: list[str]) -> dict[str, object]:
    kinds = {"data_version": str, "epochs": int, "lr": float, "backend": str}
    chosen: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in kinds:
            raise SystemExit(f"--param {item!r}: expected NAME=VALUE with NAME one of {sorted(kinds)}")
        chosen[name] = kinds[name](value)
    return chosen


def paper_pipeline(paper: str, profile: str, overrides: list[str]):
    """The pipeline that ``pipelines/<paper>/pipeline.py`` defines, for ``profile``."""
    import importlib

    return importlib.import_module(f"pipelines.{paper}.pipeline").pipeline(profile, overrides)


def compile_pipeline(paper: str, profile: str, overrides: list[str], out_dir: Path = BUILD) -> Path:
    """Compile ``paper``'s pipeline for ``profile`` into ``<out_dir>/<paper>.yaml`` (``-<profile>`` unless cluster)."""
    from kfp import compiler

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / (f"{paper}.yaml" if profile == "cluster" else f"{paper}-{profile}.yaml")
    compiler.Compiler().compile(paper_pipeline(paper, profile, overrides), str(target))
    return target


class _StepErrors(io.TextIOBase):
    """Pass the runner's output through and keep the last ``rsvl`` error each step printed (with its detail lines)."""

    def __init__(self, out) -> None:
        self.out, self.last_error, self._indent = out, "", None

    def write(self, text: str) -> int:
        for line in ANSI.sub("", text).splitlines():
            found = RSVL_ERROR.search(line)
            indent = len(line) - len(line.lstrip())
            if not line.strip():
                continue
            if found:
                self.last_error, self._indent = found.group(1).strip(), indent
            elif self._indent is not None and indent > self._indent:
                self.last_error += "; " + line.strip()
            else:
                self._indent = None
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def run_local(paper: str, overrides: list[str], parameters: dict[str, object], cache: bool,
              local_root: Path = LOCAL_ROOT) -> None:
    """Run the pipeline with the KFP local runner (task outputs under ``local_root``) and print the summary.

    Raises:
        PipelineFailed: A step failed; the message names the step and the library's error (which
            names the input and the rule broken).
    """
    from kfp import local

    from pipelines.dag import paper_tracks
    from pipelines.summary import print_summary

    tracks = paper_tracks(paper, "local", overrides)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(local_root.resolve()),
               enable_caching=cache)
    started = time.perf_counter()
    watcher = _StepErrors(sys.stdout)
    try:
        with contextlib.redirect_stdout(watcher):
            paper_pipeline(paper, "local", overrides)(**parameters)
    except RuntimeError as err:
        step = FAILED_TASK.search(ANSI.sub("", str(err)))
        cause = watcher.last_error or "see the step's log above"
        raise PipelineFailed(f"{paper} pipeline failed at step {step.group(1) if step else '?'!r}: {cause}") from err
    print_summary(tracks, local_root, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``make pipeline`` and ``make compile``."""
    args = _arguments(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parameters = _run_parameters(args.param)
    if args.target == "local":
        try:
            run_local(args.paper, args.overrides, parameters, cache=not args.no_cache)
        except PipelineFailed as err:
            raise SystemExit(f"error: {err}") from None
        return
    profile = args.profile or "cluster"
    spec = compile_pipeline(args.paper, profile, args.overrides)
    print(f"compiled {args.paper} ({profile}) -> {spec}")
    if args.target == "kfp":
        if not args.host:
            raise SystemExit("--target kfp needs --host (or KFP_HOST), the Kubeflow Pipelines endpoint")
        import kfp

        from pipelines.dag import paper_config

        account = paper_config(args.paper, profile, args.overrides).train.kuberay.service_account
        run = kfp.Client(host=args.host).create_run_from_pipeline_package(
            str(spec), arguments=parameters, run_name=f"{args.paper}-{time.strftime('%Y%m%d-%H%M%S')}",
            service_account=account)
        print(f"submitted to {args.host}: run {run.run_id}")


if __name__ == "__main__":
    sys.exit(main())
