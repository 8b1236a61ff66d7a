"""The console of a local pipeline run: one line per step, a live progress line, each step's full log in a file.

The KFP local runner prints everything on ``sys.stdout``: its own log records (the executor
input with the whole config, the outputs), every line the step's subprocess prints (library
logs, warnings) and Python warnings. :class:`StepConsole` replaces ``sys.stdout`` and
``sys.stderr`` while the pipeline runs and sends what each step prints to
``<log_dir>/<step>[-<track>].log`` (what no step printed goes to ``<log_dir>/pipeline.log``).
KFP's local runner has no per-task hook, so the console wraps
``kfp.local.orchestrator.task_executor.execute_single_task`` (KFP is pinned in
``requirements.lock``), the one function both of its orchestrators call for every task: the
wrapper knows the task's display name, the thread it runs in (tasks may run in threads), its
status, its outputs and its time. On the console it prints one line per finished step (with the
fact that matters, from :class:`pipelines.facts.StepFacts`), a progress line while a step
reports progress (training's ``step N/M`` lines, :class:`rsvl.console.Progress` lines) and, with
``verbose``, everything as well.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from rsvl.console import PROGRESS_LINE, TRAIN_LINE

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RSVL_ERROR = re.compile(r"rsvl\.errors\.\w+: (.*)$")
ANY_ERROR = re.compile(r"^\s*((?:\w+\.)*\w*(?:Error|Exception|Interrupt)(?:: .*)?)$")
PIPELINE_LOG = "pipeline.log"
# rsvl.kfp_cache's warning for an entry that failed its digest check: the reason, without digests
CACHE_LOGGER = "rsvl.kfp_cache"
CACHE_REFUSED = re.compile(r"KFP cache entry \S+ not used: (.*?)(?: \(SHA-256[^)]*\))?; the step runs")
EXECUTOR_TIME = re.compile(r"\[KFP Executor (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+\]: (.*)$")
"""A log record of the KFP executor inside the step's process, with its wall-clock time."""
PHASE_MARKS = {"Looking for component": "ready", "Wrote executor output file": "done"}
"""Executor records that end a phase: the process is up (``ready``), the component returned (``done``)."""
PHASES = ("start-up", "body", "exit")
QUIET_SECONDS = 60.0
"""Without a terminal, a step's progress line is printed once, after this long without any console line."""

OK, CACHED, FAILED = "ok", "cached", "FAILED"


@dataclass
class StepResult:
    """A finished step.

    Attributes:
        label: The task's display name (``train-captioner``).
        step: The step (``train``).
        track: The track (``main``, ``captioner``).
        status: ``ok``, ``cached`` (outputs reused, nothing ran) or ``FAILED``.
        seconds: Wall time of the step.
        log: The step's log file.
        outputs: The task's outputs (parameters, and artifacts with their local ``path``).
        error: The last ``rsvl`` error the step printed (with its detail lines), if any.
        phases: Seconds of ``start-up`` (a fresh interpreter importing KFP's executor), ``body``
            (the component: its imports and its work) and ``exit`` (outputs written back, the
            process ending), from the executor's own log times; empty for a cached step.
        cache_refused: Why its cached outputs were not used, when they failed their digest check
            (:mod:`rsvl.kfp_cache`) and the step ran again; empty otherwise.
    """

    label: str
    step: str
    track: str
    status: str
    seconds: float
    log: Path
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    cache_refused: str = ""


def split_label(label: str, tracks: "list[str] | tuple[str, ...]") -> tuple[str, str]:
    """``("train", "captioner")`` for ``train-captioner``; ``(label, "main")`` for a main-track step."""
    for track in tracks:
        if track != "main" and label.endswith(f"-{track}"):
            return label[: -len(track) - 1], track
    return label, "main"


def format_step_line(result: StepResult, fact: str = "") -> str:
    """One console line of a finished step: status, step, track, seconds and the fact that matters."""
    return f"{result.status:<6} {result.step:<9} {result.track:<10} {result.seconds:7.1f}s  {fact}".rstrip()


def format_progress(label: str, line: str) -> str | None:
    """The console's progress text for one line of a step's log, or ``None`` if it reports no progress."""
    text = ANSI.sub("", line)
    found = TRAIN_LINE.search(text)
    if found:
        return f"... {label}: step {found['done']}/{found['total']}, loss {found['loss']}, ETA {found['eta']}"
    found = PROGRESS_LINE.search(text)
    if found:
        what = found["what"].strip()
        return f"... {label}: {what} {found['done']}/{found['total']} {found['unit']}, ETA {found['eta']}"
    return None


class _ErrorWatch:
    """Keep the last ``rsvl`` error a step printed, with its more indented detail lines."""

    def __init__(self) -> None:
        self.last_error, self.last_exception, self._indent = "", "", None

    @property
    def cause(self) -> str:
        """The last ``rsvl`` error, else the last exception line."""
        return self.last_error or self.last_exception

    def line(self, line: str) -> None:
        if not line.strip():
            return
        other = ANY_ERROR.match(line)
        if other and "Traceback" not in line:
            self.last_exception = other.group(1).strip()
        found = RSVL_ERROR.search(line)
        indent = len(line) - len(line.lstrip())
        if found:
            self.last_error, self._indent = found.group(1).strip(), indent
        elif self._indent is not None and indent > self._indent:
            self.last_error += "; " + line.strip()
        else:
            self._indent = None


class _StepLog:
    """One step's log file, its partial line and its error watch."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.handle, self.pending, self.ran = path, open(path, "w", encoding="utf-8"), "", False
        self.cache_refused = ""
        self.progress_lines = 0
        self.errors = _ErrorWatch()
        self.marks: dict[str, float] = {}

    def write(self, text: str) -> list[str]:
        """Append ``text``; return the lines it completed (colour codes removed)."""
        self.handle.write(ANSI.sub("", text))
        self.handle.flush()
        self.pending += text
        *done, self.pending = self.pending.split("\n")
        lines = [ANSI.sub("", line) for line in done]
        for line in lines:
            self.errors.line(line)
            self.ran = self.ran or "Executing task" in line
            refused = CACHE_REFUSED.search(line)
            if refused:  # paths shortened to their last two parts: the step's folder and the output
                self.cache_refused = re.sub(r"/\S*/([^/\s]+/[^/\s]+)", r"\1", refused.group(1))
            self._mark(line)
        return lines

    def _mark(self, line: str) -> None:
        found = EXECUTOR_TIME.search(line)
        if found is None:
            return
        for text, mark in PHASE_MARKS.items():
            if found.group(2).startswith(text) and mark not in self.marks:
                when = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
                self.marks[mark] = when.timestamp()

    def phases(self, started: float, ended: float) -> dict[str, float]:
        """Seconds of each phase between wall-clock ``started`` and ``ended`` (empty without both marks)."""
        if set(self.marks) != set(PHASE_MARKS.values()):
            return {}
        bounds = [started, self.marks["ready"], self.marks["done"], ended]
        return {phase: max(end - begin, 0.0) for phase, begin, end in zip(PHASES, bounds, bounds[1:])}

    def close(self) -> None:
        if self.pending:
            self.errors.line(ANSI.sub("", self.pending))
        self.handle.close()


class _Routed(io.TextIOBase):
    """The ``sys.stdout``/``sys.stderr`` stand-in: hands every write to the console with the writing thread."""

    def __init__(self, console: "StepConsole") -> None:
        self.console = console

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.console.route(text)
        return len(text)

    def flush(self) -> None:
        self.console.flush()

    def isatty(self) -> bool:
        return False


class StepConsole:
    """Route a local pipeline run's output into per-step log files; print one line per step and a progress line.

    Args:
        log_dir: Where the step logs go (created).
        tracks: The run's track names (to split ``<step>-<track>`` labels).
        describe: The fact that matters of a finished step (:class:`pipelines.facts.StepFacts`);
            its errors are shown in place of the fact, never raised.
        console: Where the lines go (default: ``sys.stdout`` when :meth:`capture` starts).
        verbose: Also pass everything through to the console.
        tty: Whether the console is a terminal (one updating progress line); default: ask it.
    """

    def __init__(self, log_dir: Path, tracks: "list[str] | tuple[str, ...]",
                 describe: Callable[[StepResult], str] | None = None, console: TextIO | None = None,
                 verbose: bool = False, tty: bool | None = None) -> None:
        self.log_dir, self.tracks, self.describe, self.verbose = Path(log_dir), tuple(tracks), describe, verbose
        self.console, self._tty = console, tty
        self.results: list[StepResult] = []
        self._local, self._lock = threading.local(), threading.RLock()
        self._pipeline: _StepLog | None = None
        self._progress_shown, self._last_line = False, time.monotonic()

    # --- output routing -------------------------------------------------------------------------

    def route(self, text: str) -> None:
        """Send ``text`` written by this thread to its step's log (or the pipeline log); echo when verbose."""
        with self._lock:
            step: _StepLog | None = getattr(self._local, "step", None)
            target = step or self._pipeline
            lines = target.write(text) if target is not None else []
            if self.verbose:
                self._console_write(text)
                return
            label = getattr(self._local, "label", None)
            if step is not None and label:
                for line in lines:
                    shown = format_progress(label, line)
                    if shown:
                        self._show_progress(shown, step)

    def flush(self) -> None:
        """Flush the console."""
        if self.console is not None:
            self.console.flush()

    def _console_write(self, text: str) -> None:
        self.console.write(text)
        self.console.flush()

    def _tty_console(self) -> bool:
        if self._tty is None:
            self._tty = bool(getattr(self.console, "isatty", lambda: False)())
        return self._tty

    def _show_progress(self, text: str, step: _StepLog) -> None:
        """On a terminal, rewrite the progress line; otherwise print one line a step, after a quiet minute."""
        if self._tty_console():
            width = shutil.get_terminal_size((100, 24)).columns - 1  # a wrapped line could not be rewritten
            self._console_write("\r\x1b[K" + text[:width])
            self._progress_shown = True
        elif not step.progress_lines and time.monotonic() - self._last_line >= QUIET_SECONDS:
            step.progress_lines += 1
            self.say(text)

    def say(self, line: str) -> None:
        """Print one line on the console (above the progress line, which it clears)."""
        with self._lock:
            if self._progress_shown:
                self._console_write("\r\x1b[K")
                self._progress_shown = False
            self._console_write(line + "\n")
            self._last_line = time.monotonic()

    # --- the per-task hook ----------------------------------------------------------------------

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(original)

        def run_task(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            spec = bound.arguments.get("task_spec")
            label = (spec.task_info.name if spec is not None else "") or str(bound.arguments.get("task_name"))
            return self._run_task(label, original, args, kwargs)

        return run_task

    def _run_task(self, label: str, original: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        log = _StepLog(self.log_dir / f"{label}.log")
        self._local.step, self._local.label = log, label
        started, wall, outputs, status = time.perf_counter(), time.time(), {}, None
        try:
            outputs, status = original(*args, **kwargs)
            return outputs, status
        finally:
            self._local.step = self._local.label = None
            log.close()
            succeeded = getattr(status, "name", "") == "SUCCESS"
            state = FAILED if not succeeded else (OK if log.ran else CACHED)
            step, track = split_label(label, self.tracks)
            self._finished(StepResult(label, step, track, state, time.perf_counter() - started, log.path,
                                      dict(outputs or {}), log.errors.cause, log.phases(wall, time.time()),
                                      log.cache_refused if log.ran else ""))

    def _finished(self, result: StepResult) -> None:
        self.results.append(result)
        if result.status == FAILED:
            fact = f"full log: {result.log}"
        else:
            fact = self._fact(result)
            if result.cache_refused:
                fact = f"{fact} (cached outputs not used: {result.cache_refused}; see its log)".lstrip()
        self.say(format_step_line(result, fact))

    def _fact(self, result: StepResult) -> str:
        if self.describe is None:
            return ""
        try:
            return self.describe(result)
        except Exception as err:  # noqa: BLE001 - a summary line never stops the run
            return f"(no summary: {type(err).__name__}: {err})"

    def failed(self) -> StepResult | None:
        """The first step that failed, if any."""
        return next((result for result in self.results if result.status == FAILED), None)

    # --- the run --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def capture(self) -> Iterator["StepConsole"]:
        """Route ``sys.stdout``/``sys.stderr`` and hook KFP's task executor while the block runs."""
        import builtins

        from kfp.local.orchestrator import task_executor

        self.console = self.console or sys.stdout
        self._pipeline = _StepLog(self.log_dir / PIPELINE_LOG)
        original, printer = task_executor.execute_single_task, builtins.print
        task_executor.execute_single_task = self._wrap(original)
        routed = _Routed(self)
        # the cache's warnings go to the log of the step they concern, whatever logging is set up
        cache_log = logging.getLogger(CACHE_LOGGER)
        handler, propagate = logging.StreamHandler(routed), cache_log.propagate
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        cache_log.addHandler(handler)
        cache_log.propagate = False
        try:
            with contextlib.redirect_stdout(routed), contextlib.redirect_stderr(routed):
                yield self
        finally:
            cache_log.removeHandler(handler)
            cache_log.propagate = propagate
            task_executor.execute_single_task = original
            builtins.print = printer  # KFP indents print() per task; threads can leave it indented
            self._pipeline.close()
            if self._progress_shown:
                self._console_write("\r\x1b[K")
                self._progress_shown = False
