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
import os
import re
import sys
import time
from pathlib import Path

from pipelines import UnknownPaper, require_paper
from pipelines.console import ANSI, PIPELINE_LOG
from rsvl import allocator
from rsvl.run_lock import RunLocked
from rsvl.errors import ConfigError

LOCAL_ROOT = Path("build/kfp_local")
BUILD = Path("build")
FAILED_TASK = re.compile(r"Inner task failed: '([^']+)'")


class PipelineFailed(RuntimeError):
    """A pipeline step failed; the message names the step and the cause, ``log`` is the step's full log."""

    log: Path | None = None


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.run", description=__doc__.splitlines()[0])
    parser.add_argument("--paper", default="sar_text", help="one of pipelines/<paper>/ (unknown: lists them)")
    parser.add_argument("--profile", default=None, help="local or cluster (default: local for --target local, "
                                                        "cluster otherwise)")
    parser.add_argument("--target", choices=("local", "compile", "kfp"), default="local")
    parser.add_argument("--host", default=os.environ.get("KFP_HOST"), help="Kubeflow Pipelines endpoint (kfp)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override compiled into the pipeline")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="run parameter: data_version, epochs, lr, backend")
    parser.add_argument("--no-cache", action="store_true", help="run every step even if its inputs are unchanged")
    parser.add_argument("--verbose", action="store_true",
                        help="print everything the KFP runner and the steps print (always in the step logs)")
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
    """``paper``'s KFP pipeline for ``profile``: the shared DAG with the paper's resolved tracks compiled in.

    Raises:
        UnknownPaper: No pipeline of that name.
    """
    from pipelines.dag import build_pipeline, paper_tracks  # kfp and the components load only when needed

    return build_pipeline(paper_tracks(paper, profile, tuple(overrides)))


def compile_pipeline(paper: str, profile: str, overrides: list[str], out_dir: Path = BUILD) -> Path:
    """Compile ``paper``'s pipeline for ``profile`` into ``<out_dir>/<paper>.yaml`` (``-<profile>`` unless cluster)."""
    from kfp import compiler

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / (f"{paper}.yaml" if profile == "cluster" else f"{paper}-{profile}.yaml")
    compiler.Compiler().compile(paper_pipeline(paper, profile, overrides), str(target))
    return target


def log_dir_for(paper: str, local_root: Path) -> Path:
    """``<local_root>/../logs/<paper>-<time>``: where one run's step logs go (``build/logs/...`` by default)."""
    return local_root.resolve().parent / "logs" / f"{paper}-{time.strftime('%Y%m%d-%H%M%S')}"


def _failure(paper: str, err: RuntimeError, console, log_dir: Path) -> PipelineFailed:
    """The :class:`PipelineFailed` of a run KFP stopped: the failed step, the library's error, the step's log."""
    failed = console.failed()
    if failed is not None:
        step, cause, log = failed.label, failed.error, failed.log
    else:
        found = FAILED_TASK.search(ANSI.sub("", str(err)))
        step, cause, log = found.group(1) if found else "?", "", log_dir / PIPELINE_LOG
    failure = PipelineFailed(f"{paper} pipeline failed at step {step!r}: {cause or f'see its log {log}'}")
    failure.log = log
    return failure


def run_local(paper: str, overrides: list[str], parameters: dict[str, object], cache: bool,
              local_root: Path = LOCAL_ROOT, verbose: bool = False) -> list:
    """Run the pipeline with the KFP local runner (task outputs under ``local_root``) and print the summary.

    The console shows one line per finished step (status, step, track, seconds, the fact that
    matters), a progress line while a step trains or captions, and the summary; each step's full
    output (the KFP runner's and the component's) goes to ``<local_root>/../logs/<run>/<step>.log``.

    Args:
        paper: A paper under ``pipelines/`` (:func:`pipelines.dag.known_papers`).
        overrides: ``dotted.key=value`` config overrides compiled into the pipeline.
        parameters: Run parameters (``data_version``, ``epochs``, ``lr``, ``backend``).
        cache: Reuse the outputs of steps whose inputs are unchanged.
        local_root: The KFP local pipeline root.
        verbose: Also print everything the runner and the steps print.

    Returns:
        The finished steps (:class:`pipelines.console.StepResult`), in order.

    Raises:
        UnknownPaper: No pipeline of that name.
        PipelineFailed: A step failed; the message names the step and the library's error (which
            names the input and the rule broken); its ``log`` is the step's log file.
        RunLocked: Another run holds the lock of one of the tracks' MLflow stores or data roots
            (:func:`rsvl.run_lock.lock_files`); nothing ran.
    """
    from kfp import local

    from pipelines.console import StepConsole
    from pipelines.dag import paper_tracks
    from pipelines.facts import StepFacts
    from pipelines.summary import print_summary
    from rsvl import kfp_cache
    from rsvl.run_lock import lock_files, run_locks

    require_paper(paper)
    tracks = paper_tracks(paper, "local", overrides)
    log_dir = log_dir_for(paper, local_root)
    allocator.configure(os.environ)  # read by each step's interpreter at start: freed tensor pages stay mapped
    facts = StepFacts(tracks)
    console = StepConsole(log_dir, list(tracks), describe=facts, verbose=verbose)
    print(f"{paper} pipeline (local runner, tracks: {', '.join(tracks)}); full step logs: {log_dir}/", flush=True)
    kfp_cache.install()  # cached step outputs are used only when their digests match
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(local_root.resolve()),
               enable_caching=cache)
    started = time.perf_counter()
    # one run at a time per MLflow store and data root: a second run refuses at once (RunLocked)
    locks = lock_files([cfg.mlflow.tracking_uri for cfg in tracks.values()], [cfg.data.root for cfg in tracks.values()])
    try:
        with run_locks(locks), console.capture():
            paper_pipeline(paper, "local", overrides)(**parameters)
    except RuntimeError as err:
        raise _failure(paper, err, console, log_dir) from err
    print_summary(facts.configs, local_root, time.perf_counter() - started, log_dir, facts.versions,
                  console.results)
    return console.results


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``make pipeline`` and ``make compile``."""
    args = _arguments(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parameters = _run_parameters(args.param)
    try:
        require_paper(args.paper)
    except UnknownPaper as err:
        raise SystemExit(f"error: {err}") from None
    if args.target == "local":
        try:
            run_local(args.paper, args.overrides, parameters, cache=not args.no_cache, verbose=args.verbose)
        except PipelineFailed as err:
            raise SystemExit(f"error: {err}" + (f"\nfull log of the step: {err.log}" if err.log else "")) from None
        except RunLocked as err:
            raise SystemExit(f"error: {err}") from None
        return
    profile = args.profile or "cluster"
    try:
        spec = compile_pipeline(args.paper, profile, args.overrides)
    except ConfigError as err:  # a bad --set or config file: the message names the field and the rule
        raise SystemExit(f"error: {err}") from None
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
