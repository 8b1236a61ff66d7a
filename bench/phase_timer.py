"""Exclusive time per training phase, measured the same way in both trainers of ``train_throughput.py``.

:func:`install` wraps the functions each phase runs in (classes and module attributes of PIL,
torch, torchvision, open_clip and rsvl; nothing in either trainer's code is edited) with a push
and a pop on a per-thread stack of phases. Each push or pop closes the running *slice* of the
phase on top, so every moment of a thread belongs to at most one phase, the innermost one: an
image decoded inside the augmentation is decode time, not augment time. :meth:`PhaseTimer.dump`
writes each thread's slices (and the moments each phase was entered) as JSON;
:func:`phase_table` cuts them at step boundaries given by the caller and returns milliseconds per
step of each phase, ``other`` being the step time no phase covers.

Phases and what is wrapped (``side`` is ``ours`` or ``open_clip``):

* ``decode``: ``PIL.ImageFile.ImageFile.load`` (PIL decodes lazily, at the first pixel access);
  ours also reads ``.npy`` arrays in ``rsvl.data.media.load_raster`` (timed when the file is one);
* ``augment``: ours ``rsvl.models.preprocess.Preprocess.__call__`` and ``RandomRotation.__call__``
  (the model's ``preprocess_train``); open_clip ``torchvision.transforms.Compose.__call__`` (its
  train transform);
* ``tokenize``: ``__call__`` of open_clip's tokenizers (``SimpleTokenizer``, ``HFTokenizer``,
  ``SigLipTokenizer``), both sides;
* ``collate``: ours ``rsvl.train.data.TextImageCollate.__call__``; open_clip
  ``torch.utils.data._utils.collate.default_collate`` (the attribute ``DataLoader`` reads when it
  is built, so install before the loaders are made);
* ``data other``: ``torch.utils.data.dataloader._BaseDataLoaderIter.__next__`` (the rest of
  fetching a batch: the dataset's ``__getitem__`` around the nested phases, sampling, pinning);
* ``forward``: ``__call__`` of ``open_clip.model.CLIP``/``CustomTextCLIP`` and
  ``open_clip.coca_model.CoCa``;
* ``loss``: ``__call__`` of ``open_clip.loss.ClipLoss`` (and its subclasses) and ``SigLipLoss``;
  ours also ``rsvl.train.objectives.caption_loss`` (CoCa's captioning term);
* ``backward``: ``torch.Tensor.backward`` and ``torch.autograd.backward``;
* ``clip``: ``torch.nn.utils.clip_grad_norm_``;
* ``optimizer``: every ``Optimizer.step`` (torch's global step pre/post hooks) and
  ``Optimizer.zero_grad``;
* ``logging``: ``logging.Logger._log`` (every Python log record that passes the level check,
  handlers included), and ours ``rsvl.train.tracking.MetricLogger.log`` (MLflow metrics).

Times are ``time.time()`` seconds, the clock both trainers' step ends are taken from.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from array import array
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

PHASES = ("decode", "augment", "tokenize", "collate", "data other", "forward", "loss", "backward", "clip",
          "optimizer", "logging")
OTHER = "other"
SIDES = ("ours", "open_clip")
INDEX = {phase: index for index, phase in enumerate(PHASES)}
MICRO = 1_000_000


class _Thread(threading.local):
    """One thread's open phases and its recorded slices."""

    def __init__(self) -> None:
        self.stack: list[int] = []
        self.since = 0.0
        self.log: _Log | None = None


class _Log:
    """One thread's slices ``(phase, start, end)`` and entries ``(phase, t)``, in microseconds after the origin."""

    def __init__(self, name: str, ident: int) -> None:
        self.name, self.ident = name, ident
        self.phase, self.start, self.end = array("b"), array("q"), array("q")
        self.entered_phase, self.entered_at = array("b"), array("q")


class PhaseTimer:
    """Per-thread phase stacks and their slices; see the module docstring.

    Attributes:
        side: ``ours`` or ``open_clip`` (what :func:`install` wrapped).
        origin: ``time.time()`` when the timer was made; slices are stored relative to it.
    """

    def __init__(self, side: str) -> None:
        self.side = side
        self.origin = time.time()
        self._thread = _Thread()
        self._logs: list[_Log] = []
        self._lock = threading.Lock()
        self._restore: list[Callable[[], None]] = []

    def _own_log(self) -> _Log:
        state = self._thread
        if state.log is None:
            current = threading.current_thread()
            state.log = _Log(current.name, threading.get_ident())
            with self._lock:
                self._logs.append(state.log)
        return state.log

    def _close(self, log: _Log, phase: int, now: float) -> None:
        log.phase.append(phase)
        log.start.append(int((self._thread.since - self.origin) * MICRO))
        log.end.append(int((now - self.origin) * MICRO))

    def push(self, phase: str) -> None:
        """Enter ``phase`` in this thread: the phase on top (if any) stops accruing time until the matching pop."""
        now = time.time()
        state, index = self._thread, INDEX[phase]
        log = self._own_log()
        if state.stack:
            self._close(log, state.stack[-1], now)
            if state.stack[-1] == index:  # re-entering the same phase (CoCaLoss inside ClipLoss) is one entry
                state.stack.append(index)
                state.since = now
                return
        log.entered_phase.append(index)
        log.entered_at.append(int((now - self.origin) * MICRO))
        state.stack.append(index)
        state.since = now

    def pop(self, phase: str) -> None:
        """Leave ``phase`` in this thread (and any phase left open inside it by an exception)."""
        now = time.time()
        state, index = self._thread, INDEX[phase]
        if index not in state.stack:
            return
        log = self._own_log()
        while state.stack:
            top = state.stack.pop()
            self._close(log, top, now)
            state.since = now
            if top == index:
                break

    def wrap(self, phase: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` timed as ``phase`` (a push before the call, a pop after it, also when it raises)."""

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.push(phase)
            try:
                return func(*args, **kwargs)
            finally:
                self.pop(phase)

        return timed

    def patch(self, owner: Any, name: str, phase: str, wrapper: Callable[..., Any] | None = None) -> None:
        """Replace ``owner.name`` (a class or module attribute) by its timed version until :meth:`uninstall`.

        Args:
            owner: Class or module.
            name: Attribute name.
            phase: Phase the calls count as.
            wrapper: A ready replacement taking the original's arguments (default: :meth:`wrap`).
        """
        had = name in vars(owner)
        original = vars(owner)[name] if had else getattr(owner, name)
        setattr(owner, name, wrapper if wrapper is not None else self.wrap(phase, original))
        self._restore.append(lambda: setattr(owner, name, original) if had else delattr(owner, name))

    def uninstall(self) -> None:
        """Put every patched attribute and hook back, newest first."""
        while self._restore:
            self._restore.pop()()

    def dump(self, path: str | Path) -> Path:
        """Write every thread's slices and entries as JSON (times in microseconds after ``origin``).

        Args:
            path: The JSON file.

        Returns:
            The path written.
        """
        with self._lock:
            threads = [{"name": log.name, "ident": log.ident, "phase": log.phase.tolist(), "start": log.start.tolist(),
                        "end": log.end.tolist(), "entered_phase": log.entered_phase.tolist(),
                        "entered_at": log.entered_at.tolist()} for log in self._logs]
        path = Path(path)
        path.write_text(json.dumps({"side": self.side, "origin": self.origin, "phases": list(PHASES),
                                    "threads": threads}), encoding="utf-8")
        return path


def _optimizer_hooks(timer: PhaseTimer) -> None:
    import torch.optim.optimizer as optimizer

    pre = optimizer.register_optimizer_step_pre_hook(lambda *_: timer.push("optimizer"))
    post = optimizer.register_optimizer_step_post_hook(lambda *_: timer.pop("optimizer"))
    timer._restore += [pre.remove, post.remove]
    timer.patch(optimizer.Optimizer, "zero_grad", "optimizer")


def _common(timer: PhaseTimer) -> None:
    import open_clip.coca_model
    import open_clip.loss
    import open_clip.model
    import open_clip.tokenizer
    import torch
    import torch.utils.data._utils.collate  # noqa: F401 - the module is patched on the open_clip side
    import torch.utils.data.dataloader as dataloader
    from PIL import ImageFile

    timer.patch(ImageFile.ImageFile, "load", "decode")
    for tokenizer in ("SimpleTokenizer", "HFTokenizer", "SigLipTokenizer"):
        if hasattr(open_clip.tokenizer, tokenizer):
            timer.patch(getattr(open_clip.tokenizer, tokenizer), "__call__", "tokenize")
    timer.patch(dataloader._BaseDataLoaderIter, "__next__", "data other")
    for model in (open_clip.model.CLIP, open_clip.model.CustomTextCLIP, open_clip.coca_model.CoCa):
        timer.patch(model, "__call__", "forward")
    for loss in (open_clip.loss.ClipLoss, open_clip.loss.SigLipLoss):
        timer.patch(loss, "__call__", "loss")
    timer.patch(torch.Tensor, "backward", "backward")
    timer.patch(torch.autograd, "backward", "backward")
    timer.patch(torch.nn.utils, "clip_grad_norm_", "clip")
    _optimizer_hooks(timer)
    timer.patch(logging.Logger, "_log", "logging")


def _ours(timer: PhaseTimer) -> None:
    import rsvl.data.dataset
    import rsvl.data.media
    import rsvl.train.objectives
    from rsvl.data.schema import ARRAY_SUFFIXES
    from rsvl.models.preprocess import Preprocess, RandomRotation
    from rsvl.train.data import TextImageCollate
    from rsvl.train.tracking import MetricLogger

    original = rsvl.data.media.load_raster
    timed = timer.wrap("decode", original)

    @functools.wraps(original)
    def load_raster(path: Any) -> Any:
        # an image's decode is PIL's load, timed inside; an array file is read whole here
        return (timed if Path(path).suffix.lower() in ARRAY_SUFFIXES else original)(path)

    timer.patch(rsvl.data.media, "load_raster", "decode", load_raster)
    timer.patch(rsvl.data.dataset, "load_raster", "decode", load_raster)  # bound by ``from ... import``
    timer.patch(Preprocess, "__call__", "augment")
    timer.patch(rsvl.train.objectives, "caption_loss", "loss")  # ours: CoCa's captioning term, outside ClipLoss
    timer.patch(RandomRotation, "__call__", "augment")
    timer.patch(TextImageCollate, "__call__", "collate")
    timer.patch(MetricLogger, "log", "logging")


def _open_clip(timer: PhaseTimer) -> None:
    import torch.utils.data._utils.collate as collate
    import torchvision.transforms

    timer.patch(torchvision.transforms.Compose, "__call__", "augment")
    timer.patch(collate, "default_collate", "collate")


def install(side: str) -> PhaseTimer:
    """Wrap the phase functions of one trainer (see the module docstring) and return the timer.

    Install before the trainer builds its data loaders (open_clip's default collate is read then).

    Args:
        side: ``ours`` or ``open_clip``.

    Returns:
        The timer; call :meth:`PhaseTimer.uninstall` to undo the wrapping.

    Raises:
        ValueError: ``side`` is neither.
    """
    if side not in SIDES:
        raise ValueError(f"phase timer side must be one of {SIDES}, not {side!r}")
    timer = PhaseTimer(side)
    try:
        _common(timer)
        (_ours if side == "ours" else _open_clip)(timer)
    except BaseException:
        timer.uninstall()
        raise
    return timer


def _covered(starts: Any, ends: Any, windows: Sequence[tuple[float, float]]) -> list[float]:
    """Seconds of the slices ``[starts, ends)`` inside each window."""
    import numpy as np

    return [float(np.clip(np.minimum(ends, end) - np.maximum(starts, start), 0.0, None).sum())
            for start, end in windows]


def phase_table(dump: dict[str, Any], windows: Iterable[tuple[float, float, int]]) -> dict[str, Any]:
    """Milliseconds per step of each phase over the given steps, from a :meth:`PhaseTimer.dump`.

    The trainer's thread is the one whose ``forward`` slices cover the most time; other threads'
    slices are left out.

    Args:
        dump: The dumped JSON, loaded.
        windows: ``(start, end, steps)`` of each timed interval (``time.time()`` seconds); together
            the steady state.

    Returns:
        ``{"steps", "step_ms", "ms": {phase: ms per step, ..., "other": ...}, "calls": {phase: entries
        per step}, "thread": name}``; ``other`` is the step time no phase covers.

    Raises:
        ValueError: The dump has no thread that ran a forward pass, or ``windows`` is empty.
    """
    import numpy as np

    windows = list(windows)
    if not windows:
        raise ValueError("no steady-state steps to attribute phase time to")
    phases, origin = dump["phases"], dump["origin"]
    forward = phases.index("forward")

    def forward_time(thread: dict[str, Any]) -> int:
        return sum(e - s for p, s, e in zip(thread["phase"], thread["start"], thread["end"]) if p == forward)

    threads = [t for t in dump["threads"] if forward_time(t) > 0]
    if not threads:
        raise ValueError(f"the {dump['side']} phase dump holds no thread that ran a forward pass")
    thread = max(threads, key=forward_time)
    phase = np.asarray(thread["phase"])
    starts = origin + np.asarray(thread["start"], dtype=np.float64) / MICRO
    ends = origin + np.asarray(thread["end"], dtype=np.float64) / MICRO
    entered_phase = np.asarray(thread["entered_phase"])
    entered_at = origin + np.asarray(thread["entered_at"], dtype=np.float64) / MICRO
    bounds = [(start, end) for start, end, _ in windows]
    steps = sum(n for _, _, n in windows)
    total = sum(end - start for start, end in bounds)
    ms = {name: 1000.0 * sum(_covered(starts[phase == i], ends[phase == i], bounds)) / steps
          for i, name in enumerate(phases)}
    ms[OTHER] = 1000.0 * total / steps - sum(ms.values())
    calls = {}
    for i, name in enumerate(phases):
        at = entered_at[entered_phase == i]
        calls[name] = sum(int(((at >= start) & (at < end)).sum()) for start, end in bounds) / steps
    return {"steps": steps, "step_ms": 1000.0 * total / steps, "ms": ms, "calls": calls, "thread": thread["name"]}


def read_phase_table(path: str | Path, windows: Iterable[tuple[float, float, int]]) -> dict[str, Any]:
    """:func:`phase_table` of a dump file.

    Raises:
        ValueError: See :func:`phase_table`; also a file that is not a phase dump (the message names it).
    """
    path = Path(path)
    dump = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(dump, dict) or "threads" not in dump or dump.get("phases") != list(PHASES):
        raise ValueError(f"{path}: not a phase dump of this phase_timer (phases {list(PHASES)})")
    return phase_table(dump, windows)
