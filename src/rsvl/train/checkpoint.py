"""Train checkpoints: the model as a loadable folder plus optimizer/scheduler/step state.

A checkpoint directory holds:

* ``model/``: the model written by :func:`rsvl.models.save_model` (safetensors weights and the
  open_clip config), so any checkpoint is also a usable model;
* ``train_state.pt``: a dict of tensors and plain numbers (optimizer, scheduler and AMP scaler
  state dicts, step, epoch, baseline evaluation, and the parameters an adapter added,
  :func:`rsvl.train.trainable.adapter_state_dict`), read back with ``torch.load(weights_only=True)``
  so a checkpoint cannot run code. ``model/`` holds an adapter merged into the weights (a plain
  model); reading a checkpoint restores the adapter's own parameters before the weights.

Ray Train keeps the checkpoints of a distributed run itself. A run in Ray Train's local mode
(``train.num_workers: 0``) does not, so the worker keeps them in the run folder:
:func:`persist_checkpoint` moves a finished checkpoint there atomically as
``checkpoint_step<NNNNNNNN>`` and :func:`latest_checkpoint` finds it again on re-launch.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from rsvl.errors import ModelError, TrainError
from rsvl.models import save_model
from rsvl.models.io import WEIGHTS_NAME
from rsvl.train.trainable import adapter_state_dict, load_adapter_state_dict

MODEL_DIR = "model"
ABLATIONS_DIR = "ablations"
"""Beside ``model/`` in a train step's output: ``ablations/<name>/model`` for each ``train.ablations`` control run."""
TRAIN_STATE = "train_state.pt"
STEP_CHECKPOINT = "checkpoint_step{step:08d}"
STEP_CHECKPOINT_PATTERN = re.compile(r"checkpoint_step(\d{8})")


def write_checkpoint(
    directory: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    state: dict[str, Any],
    objective_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint into ``directory``.

    Args:
        directory: Destination (created).
        model: The model (a DDP wrapper is unwrapped by ``save_model``).
        optimizer: Its optimizer.
        scheduler: Its learning-rate scheduler.
        scaler: AMP ``GradScaler`` or ``None``.
        state: Plain progress values (``step``, ``epoch``, ...).
        objective_state: The objective's own state (``Objective.state_dict``: EBA's queue).

    Returns:
        The directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(model, directory / MODEL_DIR)
    payload = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "progress": dict(state),
        "adapter": adapter_state_dict(model),
        "objective": dict(objective_state or {}),
    }
    torch.save(payload, directory / TRAIN_STATE)
    return directory


def read_checkpoint(
    directory: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    objective: Any = None,
) -> dict[str, Any]:
    """Restore model weights, optimizer, scheduler and scaler (and the objective's state) from a checkpoint, in place.

    Args:
        directory: A folder written by :func:`write_checkpoint`.
        model: The unwrapped model, built with the same architecture.
        optimizer: Optimizer over the same parameters.
        scheduler: Scheduler of that optimizer.
        scaler: AMP ``GradScaler`` or ``None``.
        objective: The run's objective, given its saved state (``load_state_dict``); ``None``: not restored.

    Returns:
        The progress values saved with it.

    Raises:
        ModelError: A file is missing or does not fit the model.
    """
    directory = Path(directory)
    weights, state_file = directory / MODEL_DIR / WEIGHTS_NAME, directory / TRAIN_STATE
    for path in (weights, state_file):
        if not path.is_file():
            raise ModelError(f"{path}: missing; not a checkpoint written by rsvl.train")
    try:
        payload = torch.load(state_file, map_location="cpu", weights_only=True)
        # an adapter first: the merged weights in model/ are checked against the frozen weights plus it
        load_adapter_state_dict(model, payload.get("adapter", {}))
        model.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        if scaler is not None and payload["scaler"] is not None:
            scaler.load_state_dict(payload["scaler"])
        if objective is not None:
            objective.load_state_dict(payload.get("objective") or {})
    except (RuntimeError, KeyError, ValueError, ModelError) as err:
        raise ModelError(f"{directory}: checkpoint does not fit this model and optimizer ({err})") from err
    return dict(payload["progress"])


def _step_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    if not run_dir.is_dir():
        return []
    found = [(STEP_CHECKPOINT_PATTERN.fullmatch(path.name), path) for path in run_dir.iterdir() if path.is_dir()]
    return sorted((int(match.group(1)), path) for match, path in found if match)


def persist_checkpoint(directory: str | Path, run_dir: str | Path, step: int, keep: int) -> Path:
    """Move a written checkpoint into ``run_dir`` as the step's checkpoint; keep the newest ``keep``.

    The folder appears under its final name only once complete (a rename within ``run_dir``), so a
    process killed mid-write never leaves a half checkpoint that :func:`latest_checkpoint` would pick.

    Args:
        directory: A folder written by :func:`write_checkpoint`; it is moved, not copied.
        run_dir: The run's storage folder.
        step: The optimizer step the checkpoint holds.
        keep: How many step checkpoints to keep (older ones are deleted).

    Returns:
        The checkpoint's final path.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / STEP_CHECKPOINT.format(step=step)
    staging = run_dir / f".{final.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.move(str(directory), staging)  # a copy when the scratch folder is on another file system
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    for _, old in _step_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_write_error(err: OSError, step: int, scratch: str | Path, run_dir: str | Path | None) -> Exception:
    """A full disk while writing step ``step``'s checkpoint as a :class:`TrainError` saying what is kept and what to free.

    Args:
        err: What the write raised.
        step: The step being checkpointed.
        scratch: The scratch folder it was written in.
        run_dir: The run's checkpoint folder (local mode), or ``None`` (Ray keeps them).

    Returns:
        The error to raise; ``err`` itself when it is not ``ENOSPC``.
    """
    from rsvl.data.store import free_bytes

    if err.errno != errno.ENOSPC:
        return err
    places = [Path(scratch)] + ([Path(run_dir)] if run_dir is not None else [])
    free = "; ".join(f"{probe}: {size:,} bytes free" for probe, size in dict(map(free_bytes, places)).items())
    last = latest_checkpoint(run_dir) if run_dir is not None else None
    kept = f"the last whole checkpoint, {last}, is unchanged and a re-launch resumes from it" if last else \
        "no earlier checkpoint exists, so a re-launch starts over"
    return TrainError(f"the disk filled up while writing the checkpoint of step {step} ({free}); {kept}; free space "
                      "(old runs under build/, mlflow/artifacts, ray_results) or set train.keep_checkpoints lower, "
                      "and run again")


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete step checkpoint in ``run_dir``, or ``None`` when it has none."""
    found = _step_checkpoints(Path(run_dir))
    return found[-1][1] if found else None
