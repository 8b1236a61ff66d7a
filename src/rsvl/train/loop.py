"""The per-worker train function Ray Train runs: one fit, resumable at any checkpoint.

Every worker builds (or loads) the model, applies the trainable subset and objective, wraps model
and loader for DDP and trains with AMP/TF32 on CUDA, gradient clipping and warmup + cosine. Rank 0
logs to MLflow, scores held-out retrieval and writes checkpoints; a resumed worker continues with
exactly the batches and random draws of an uninterrupted run (see ``docs/training.md``).

**Test hooks.** ``RSVL_TEST_KILL_AT_STEP=K`` / ``RSVL_TEST_RAISE_AT_STEP=K`` make rank 0 exit
(``os._exit``) or raise just before step K, once per run (a marker file in the run's storage
folder stops a repeat). Only the test suite sets them.
"""

from __future__ import annotations

import logging
import os
import resource
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from rsvl.config import RunConfig, TrainConfig
from rsvl.data.dataset import ManifestDataset
from rsvl.evaluate.retrieval import evaluate_retrieval
from rsvl.models import build_model, load_model
from rsvl.models.multisensor import build_sensor_model
from rsvl.models.layout import use_channels_last
from rsvl.train.checkpoint import (checkpoint_write_error, latest_checkpoint, persist_checkpoint, read_checkpoint,
                                  write_checkpoint)
from rsvl.models.token_counts import context_length
from rsvl.train.data import (
    TEXT_SOURCES,
    TRUNCATED_PREFIX,
    CaptionPairs,
    EpochBatches,
    EpochBatchSampler,
    TextImageCollate,
    fit_model_to_data,
    image_inputs,
    sample_seed,
    truncated_texts,
)
from rsvl.train.objectives import Objective, ObjectiveContext, build_objective
from rsvl.train.schedule import lr_schedule
from rsvl.train.text_cache import install_text_cache, remove_text_cache
from rsvl.train.tracking import MetricLogger
from rsvl.models.preprocess import RandomRotation
from rsvl.train.trainable import apply_trainable, param_groups, set_train_mode

KILL_AT_STEP_ENV = "RSVL_TEST_KILL_AT_STEP"
RAISE_AT_STEP_ENV = "RSVL_TEST_RAISE_AT_STEP"
TEST_MARKER = "rsvl-test-{action}-at-step-{step}"
ADAM_BETAS = (0.9, 0.98)
ADAM_EPS = 1e-6
MIB = 2**20

log = logging.getLogger("rsvl.train")


def worker_threads(cpus_per_worker: int) -> int:
    """Torch threads of a training worker: its CPUs, or fewer where ``OMP_NUM_THREADS`` says so.

    Ray sets ``OMP_NUM_THREADS`` to a worker's CPUs unless the environment that started Ray set it
    already, so a user (or the test suite sharing the cores among its processes) caps it there.

    Args:
        cpus_per_worker: ``train.cpus_per_worker``.

    Returns:
        The thread count for ``torch.set_num_threads``.
    """
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(cpus_per_worker, int(cap)) if cap.isdigit() and int(cap) > 0 else cpus_per_worker


def _test_failure_hook(step: int, rank: int, run_dir: str | None) -> None:
    for env, action in ((KILL_AT_STEP_ENV, "kill"), (RAISE_AT_STEP_ENV, "raise")):
        target = os.environ.get(env)
        if not target or rank != 0 or run_dir is None or int(target) != step:
            continue
        marker = Path(run_dir) / TEST_MARKER.format(action=action, step=step)
        if marker.exists():
            continue
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        log.warning("test hook %s=%d: %s at step %d", env, step, action, step)
        if action == "raise":
            raise RuntimeError(f"test hook {env}={step}: injected failure")
        logging.shutdown()
        os._exit(1)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _format_eta(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _pad_id(tokenizer: Any) -> int:
    inner = getattr(tokenizer, "tokenizer", None)
    pad = getattr(inner, "pad_token_id", None)
    return int(pad) if pad is not None else 0


class _Interval:
    """Running sums of one logging interval (loss, objective metrics, samples, time)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.samples = 0
        self.started = time.perf_counter()

    def add(self, values: dict[str, torch.Tensor], samples: int) -> None:
        """Add one step's scalar outputs and its batch size."""
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.steps += 1
        self.samples += samples

    def means(self, world_size: int) -> dict[str, float]:
        """Per-step means over the interval, averaged over all workers (a collective: call on every rank)."""
        keys = sorted(self.sums)
        # float64 sums, so the all-reduced means lose no precision over long intervals
        totals = torch.tensor([self.sums[k] for k in keys] + [float(self.steps)], dtype=torch.float64)
        if world_size > 1:
            torch.distributed.all_reduce(totals)
        return {k: float(totals[i] / totals[-1]) for i, k in enumerate(keys)}


@dataclass
class _Fit:
    """Everything one worker trains with."""

    model: torch.nn.Module
    wrapped: torch.nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    autocast: Callable[[], Any]
    batches: EpochBatches
    preprocess_val: Any
    tokenizer: Any
    sizes: dict[str, int]
    steps_per_epoch: int
    total: int


class _Worker:
    """One worker's fit; :meth:`run` is the whole train function."""

    def __init__(self, loop_config: dict[str, Any]) -> None:
        import ray.train
        import ray.train.torch

        self.cfg = RunConfig.model_validate(loop_config["config"])
        self.train: TrainConfig = self.cfg.train
        self.dataset_dir = loop_config["dataset_dir"]
        self.inputs_dir = loop_config.get("inputs_dir")
        self.run_dir = loop_config.get("run_dir")
        self.local = bool(loop_config.get("local_mode"))
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        torch.set_num_threads(worker_threads(self.train.cpus_per_worker))
        self.device = ray.train.torch.get_device()
        self.cuda = self.device.type == "cuda"
        if self.cuda and self.train.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        run_id = loop_config.get("run_id") if self.rank == 0 else None
        self.logger = MetricLogger(loop_config.get("tracking_uri"), run_id)

    def _amp(self) -> tuple[Callable[[], Any], Any]:
        if not (self.cuda and self.train.amp):
            return nullcontext, None
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        return (lambda: torch.autocast("cuda", dtype=dtype)), scaler

    def _setup(self) -> _Fit:
        import ray.train.torch

        train = self.train
        samples = ManifestDataset(self.dataset_dir, split="train")
        # seed before building, so a fresh model's random init is the same on every launch
        torch.manual_seed(train.seed)
        model, preprocess_train, preprocess_val, tokenizer = self._start_model(samples)
        if train.random_rotation:
            preprocess_train = RandomRotation(preprocess_train, train.random_rotation)
        context = ObjectiveContext(self.rank, self.world, _pad_id(tokenizer), tokenizer)
        objective = build_objective(train.objective, context)
        sizes = apply_trainable(model, train.trainable)
        objective.prepare(model)
        use_channels_last(model)  # before DDP wraps it: its gradient buckets take the parameters' layout
        wrapped = ray.train.torch.prepare_model(model)
        optimizer = torch.optim.AdamW(
            param_groups(model, train.weight_decay), lr=train.lr, betas=ADAM_BETAS, eps=ADAM_EPS
        )
        collate = TextImageCollate(tokenizer, objective.batch_fields)
        sizes.update(self._truncation(tokenizer, samples, objective.batch_fields))
        streams = {}
        # a sensor model reads each sensor's rows as its own stream, with its own order (seed + 1 + index)
        media = {None: (train.image_column, train.seed)} if not train.sensors else {
            sensor: (sensor, sample_seed(train.seed, index + 1)) for index, sensor in enumerate(train.sensors)}
        for key, (column, seed) in media.items():
            rows = samples if key is None else samples.with_media(column)
            sampler = EpochBatchSampler(len(rows), train.batch_size, self.rank, self.world, seed)
            pairs = CaptionPairs(rows, preprocess_train, media=column, seed=seed)
            loader = torch.utils.data.DataLoader(pairs, batch_sampler=sampler, num_workers=train.loader_workers,
                                                 collate_fn=collate)
            streams[key] = (sampler, pairs, ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False))
        batches = EpochBatches(streams)
        total = train.max_steps or train.epochs * len(batches)
        autocast, scaler = self._amp()
        return _Fit(
            model=model, wrapped=wrapped, objective=objective, optimizer=optimizer,
            scheduler=lr_schedule(optimizer, train.schedule, total, train.warmup_steps, train.pct_start),
            scaler=scaler, autocast=autocast, batches=batches, preprocess_val=preprocess_val, tokenizer=tokenizer,
            sizes=sizes, steps_per_epoch=len(batches), total=total,
        )

    def _truncation(self, tokenizer: Any, samples: ManifestDataset, fields: tuple[str, ...]) -> dict[str, int]:
        """Count the training texts longer than the context (``truncated_<field>``), with a warning when any are."""
        counts = truncated_texts(tokenizer, samples, fields)
        for field, (cut, total) in counts.items():
            if cut and self.rank == 0:
                log.warning("%d of %d %s are longer than the model's %d-token context: the tokenizer cuts them",
                            cut, total, TEXT_SOURCES[field], context_length(tokenizer))
        return {f"{TRUNCATED_PREFIX}{field}": cut for field, (cut, _) in counts.items()}

    def _start_model(self, samples: ManifestDataset) -> Any:
        """The weights training starts from: ``train.init_from`` when set, else a fresh ``cfg.model``.

        A fresh model's image input is decided by ``inputs_dir`` (the first stage's dataset of a
        progression, so every stage trains the same tower) or else by this fit's own data. An RGB
        tower given one band with band statistics is narrowed to it (:func:`fit_model_to_data`).
        """
        column = self.train.image_column
        if self.train.init_from:
            built = load_model(self.train.init_from)
            return built if self.train.sensors else fit_model_to_data(built, samples, column)
        model_cfg = self.cfg.model
        decider = samples
        if self.inputs_dir not in (None, self.dataset_dir):
            decider = ManifestDataset(self.inputs_dir, split="train")
        if self.train.sensors:
            return build_sensor_model(
                model_cfg.name, model_cfg.pretrained, {s: image_inputs(decider.with_media(s), s) for s in self.train.sensors},
                image_size=model_cfg.image_size,
                location=model_cfg.location.model_dump() if model_cfg.location else None)
        in_bands, band_stats = image_inputs(decider, column)
        built = build_model(model_cfg.name, model_cfg.pretrained, in_bands, band_stats, image_size=model_cfg.image_size)
        return fit_model_to_data(built, samples, column)

    def _evaluate(self, fit: _Fit, step: int) -> dict[str, float]:
        split = self.train.eval_split
        named: dict[str, float] = {}
        # a sensor model is scored per sensor: text→S1 as <split>_s1_mR, text→S2 as <split>_s2_mR
        for column in self.train.sensors or [self.train.image_column]:
            prefix = f"{split}_{column}_" if self.train.sensors else f"{split}_"
            scores = evaluate_retrieval(fit.model, fit.preprocess_val, fit.tokenizer, self.dataset_dir, split,
                                        media=column, device=self.device)
            named.update({f"{prefix}{key}": value for key, value in scores.items()})
            log.info("step %d: %s retrieval%s mR %.2f", step, split, f" ({column})" if self.train.sensors else "",
                     scores["mR"])
        self.logger.log(named, step)
        return named

    def _resume_directory(self) -> Any:
        """A context giving the folder of the checkpoint to resume from, or ``None`` for a fresh start."""
        import ray.train

        if self.local:
            found = latest_checkpoint(self.run_dir)
            return nullcontext(str(found)) if found is not None else None
        checkpoint = ray.train.get_checkpoint()
        return checkpoint.as_directory() if checkpoint is not None else None

    def _restore_or_start(self, fit: _Fit) -> dict[str, Any]:
        resume = self._resume_directory()
        if resume is not None:
            with resume as directory:
                progress = read_checkpoint(directory, fit.model, fit.optimizer, fit.scheduler, fit.scaler,
                                           fit.objective)
            self.logger.log({"resumed_from_step": progress["step"]}, progress["step"])
            log.info("resumed from the checkpoint at step %d", progress["step"])
            progress["sizes"] = dict(fit.sizes)
            return progress
        progress: dict[str, Any] = {"step": 0, "epoch": 0, "baseline": {}, "final": {}, "sizes": dict(fit.sizes)}
        if self.rank == 0:
            self.logger.log({key: float(value) for key, value in fit.sizes.items()}, 0)
            if self.train.eval_split and self.train.eval_baseline:
                progress["baseline"] = self._evaluate(fit, 0)
        return progress

    def _step(self, fit: _Fit, batch: dict[str, Any], step: int) -> tuple[dict[str, torch.Tensor], float]:
        """Run optimizer step ``step`` (1-based); return the objective's outputs and the rate used."""
        # the seed is a function of (seed, step, rank), so a resumed run draws the same dropout
        torch.manual_seed(sample_seed(self.train.seed, step, self.rank))
        with fit.autocast():
            out = fit.objective(fit.wrapped, batch)
        if not torch.isfinite(out["loss"].detach()):
            raise FloatingPointError(
                f"objective {fit.objective.name!r} gave loss {out['loss'].item()} at step {step}; "
                "lower train.lr or check the model's initialisation"
            )
        fit.optimizer.zero_grad(set_to_none=True)
        if fit.scaler is not None:
            fit.scaler.scale(out["loss"]).backward()
            fit.scaler.unscale_(fit.optimizer)
        else:
            out["loss"].backward()
        if self.train.grad_clip_norm is not None:
            params = [p for group in fit.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.train.grad_clip_norm)
        lr = fit.optimizer.param_groups[0]["lr"]
        if fit.scaler is not None:
            fit.scaler.step(fit.optimizer)
            fit.scaler.update()
        else:
            fit.optimizer.step()
        fit.scheduler.step()
        fit.objective.after_step(fit.model)
        return {key: value.detach() for key, value in out.items()}, lr

    def run(self) -> None:
        """Train from the last checkpoint (or from scratch) to the last step, checkpointing on the way."""
        import ray.train

        fit = self._setup()
        progress = self._restore_or_start(fit)
        step = int(progress["step"])
        if step >= fit.total:
            ray.train.report(self._reported(progress))
            return
        set_train_mode(fit.model, self.train.trainable)
        text_cache = install_text_cache(fit.model)
        try:
            self._train_steps(fit, progress, step)
        finally:
            remove_text_cache(fit.model)
        if text_cache is not None and text_cache.active and self.rank == 0:
            log.info("text features: %d captions served from the cache, %d encoded", text_cache.hits,
                     text_cache.misses)

    def _train_steps(self, fit: _Fit, progress: dict[str, Any], step: int) -> None:
        """The step loop of :meth:`run`: from ``step`` to the last, logging, evaluating and checkpointing."""
        start = step
        interval, started, last_loss = _Interval(), time.perf_counter(), float("nan")
        while step < fit.total:
            epoch, offset = divmod(step, fit.steps_per_epoch)
            fit.batches.set_epoch(epoch, offset)
            fit.objective.start_epoch(epoch)
            for batch in fit.batches:
                _test_failure_hook(step + 1, self.rank, self.run_dir)
                out, lr = self._step(fit, batch, step + 1)
                step += 1
                interval.add(out, len(batch["sample_id"]))
                if step % self.train.log_every == 0 or step == fit.total:
                    last_loss = self._log_interval(fit, interval, step, lr, step - start, started)
                    interval = _Interval()
                if step % fit.steps_per_epoch == 0 or step == fit.total:
                    self._log_epoch(fit, epoch, step)
                if step % self.train.checkpoint_every == 0 or step == fit.total:
                    if step == fit.total and self.rank == 0 and self.train.eval_split:
                        progress["final"] = self._evaluate(fit, step)
                        set_train_mode(fit.model, self.train.trainable)
                    progress.update(step=step, epoch=epoch)
                    self._checkpoint(fit, progress, last_loss)
                if step >= fit.total:
                    break

    def _log_interval(self, fit: _Fit, interval: _Interval, step: int, lr: float, done: int, started: float) -> float:
        means = interval.means(self.world)
        elapsed = time.perf_counter() - interval.started
        metrics = {
            **means,
            "lr": lr,
            "epoch": step / fit.steps_per_epoch,
            "samples_per_s": interval.samples * self.world / max(elapsed, 1e-9),
            "peak_memory_mb": _peak_memory_mb(self.device),
        }
        self.logger.log(metrics, step)
        if self.rank == 0:
            eta = (time.perf_counter() - started) / max(done, 1) * (fit.total - step)
            log.info(
                "step %d/%d epoch %.2f loss %.4f lr %.2e %.1f samples/s ETA %s", step, fit.total, metrics["epoch"],
                means["loss"], lr, metrics["samples_per_s"], _format_eta(eta),
            )
        return means["loss"]

    def _log_epoch(self, fit: _Fit, epoch: int, step: int) -> None:
        """Log the objective's per-epoch metrics (EBA's τ and dropped count) at the epoch's last step."""
        metrics = fit.objective.epoch_metrics(epoch)
        if metrics and self.rank == 0:
            self.logger.log(metrics, step)
            log.info("epoch %d: %s", epoch, " ".join(f"{key} {value:.4g}" for key, value in sorted(metrics.items())))

    @staticmethod
    def _reported(progress: dict[str, Any]) -> dict[str, Any]:
        """The numbers a checkpoint reports to Ray: step, loss, parameter counts (``trainable_params``, ...),
        held-out scores (``baseline_`` before training)."""
        return {
            "step": progress["step"], "epoch": progress["epoch"], "loss": progress.get("loss", float("nan")),
            **{key: float(value) for key, value in progress.get("sizes", {}).items()},
            **progress["final"], **{f"baseline_{key}": value for key, value in progress["baseline"].items()},
        }

    def _log_artifacts(self, fit: _Fit) -> None:
        """Put the objective's files (EBA's dropped pairs) into the MLflow run, and beside the run's checkpoints."""
        files = fit.objective.artifacts()  # a collective for some objectives: every rank calls it
        if self.rank != 0:
            return
        for name, text in files.items():
            self.logger.log_text(text, name)
            if self.run_dir is not None:
                Path(self.run_dir).mkdir(parents=True, exist_ok=True)
                (Path(self.run_dir) / name).write_text(text, encoding="utf-8")

    def _checkpoint(self, fit: _Fit, progress: dict[str, Any], loss: float) -> None:
        import ray.train

        progress["loss"] = loss
        metrics = self._reported(progress)
        objective_state = fit.objective.state_dict()  # a collective for some objectives: every rank calls it
        if progress["step"] == fit.total:
            self._log_artifacts(fit)
        with tempfile.TemporaryDirectory(prefix="rsvl-ckpt-") as scratch:
            checkpoint = None
            if self.rank == 0:
                try:
                    directory = write_checkpoint(Path(scratch) / "checkpoint", fit.model, fit.optimizer,
                                                 fit.scheduler, fit.scaler, progress, objective_state)
                    if self.local:
                        directory = persist_checkpoint(directory, self.run_dir, progress["step"],
                                                       self.train.keep_checkpoints)
                except OSError as err:
                    run_dir = self.run_dir if self.local else None
                    raise checkpoint_write_error(err, progress["step"], scratch, run_dir) from err
                checkpoint = ray.train.Checkpoint.from_directory(directory)
            ray.train.report(metrics, checkpoint=checkpoint)
        if not self.local:
            ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point: train one worker's share of the run described by ``loop_config``.

    Args:
        loop_config: ``config`` (the resolved RunConfig as JSON-ready dict), ``dataset_dir``,
            ``tracking_uri`` and ``run_id`` (MLflow; ``None`` logs nothing) and ``run_dir`` (the
            run's local storage folder: the test hook's marker, and local mode's checkpoints; may be
            ``None`` for remote storage), ``local_mode`` (Ray Train local mode: keep checkpoints in
            ``run_dir``) and ``inputs_dir`` (optional: the dataset whose bands decide a fresh
            model's image input; default ``dataset_dir``).
    """
    _Worker(loop_config).run()
