"""Training throughput of our Ray trainer against open_clip's own training script, side by side.

Both train the same architecture from the same weights on the same generated images, with the
same batch size, image size, torch threads, loader workers, optimizer settings and precision, one
after the other in one run:

* **ours**: :func:`rsvl.train.fit` (Ray Train ``TorchTrainer``), progress logged to a throw-away
  MLflow store every step; ``--ours-workers 0`` (the default, the laptop profile's setting) is Ray
  Train's local mode, the loop in this process; ``--ours-workers 1`` one Ray Train worker process
  (the cluster's shape, after Ray starts);
* **open_clip**: ``open_clip_train.main`` (open_clip 3.3.0's training script) on a CSV of the
  same images, run by ``bench/open_clip_launcher.py`` in a fresh process.

Data: the optical scenes of :mod:`rsvl.data.generate`, written large enough that ``--steps``
batches fit in one epoch, so neither side crosses an epoch boundary. Our trainer draws one of an
image's captions each time it sees the image; the CSV holds one row per image with one caption
drawn once, so both see the same images and the same number of samples per step.

Timing, the same definition on both sides: a step ends when the trainer logs it (our MLflow
metric timestamps, open_clip's "Train Epoch" log records), so a step's time includes loading,
forward, backward, optimizer and logging. The first ``--skip-steps`` steps are fixed costs;
steady state is the rest. Fixed costs: Ray start (ours), launch to the first batch being asked
for, the first step, and the end of the last step to the trainer returning (final checkpoint).

Noise: a 2-core machine shared with other work gives noisy numbers, so :mod:`cpu_usage` samples
every process during each run. The report shows the cores each role used in the steady state
(trainer, loader workers, Ray's own processes, anything outside the benchmark) and, besides the
plain steady-state rate, the rate over the "quiet" steps, during which processes outside the
benchmark used under 0.1 cores. ``--repeat N`` runs each trainer N times, alternating which goes
first, and reports each one's best run.

``--log-every N`` makes both trainers log (and so be timed) every N steps instead of every step;
``--ours-env NAME=VALUE`` sets an environment variable for our run only, before Ray starts (to try
Ray settings such as ``RAY_worker_niceness=0`` without changing the trainer).

``--phases`` adds one more run of each trainer, with ``--workers 0`` so that decoding, augmenting
and collating happen in the trainer process, timed by :mod:`phase_timer` (the same wrappers on
both sides, installed before the trainer runs: ours in this process, open_clip's by the
launcher). It prints, after the throughput report, each phase's exclusive milliseconds per
steady-state step (the same steps as the throughput numbers) for both trainers and their
difference; the throughput runs are not timed this way and keep their loader workers.

Run from the repository root (see ``bench/README.md``)::

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/train_throughput.py
    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/train_throughput.py --phases --repeat 1
    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/train_throughput.py --device cuda \\
        --model ViT-B-32 --pretrained none --batch-size 256 --image-size 224 --threads 8 --workers 8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpu_usage import OTHERS, RAY, CpuUsage
from phase_timer import OTHER, PHASES, read_phase_table

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = Path(__file__).resolve().parent / "open_clip_launcher.py"
DEFAULT_MODEL = "rsvl-effnetlite0-minilm"
CPU_IMAGE_SIZE = 96
LR, WEIGHT_DECAY, BETAS, EPS, GRAD_CLIP = 5e-5, 0.1, (0.9, 0.98), 1e-6, 1.0
EXPERIMENT = "bench-train-throughput"
NOISY_CORES = 0.1
MIN_QUIET_STEPS = 3


@dataclass
class Timings:
    """Wall-clock marks of one trainer's run (seconds since the epoch unless said otherwise).

    Attributes:
        name: Trainer label.
        batch_size: Samples per step.
        launched: When the trainer was launched.
        ready: When it first asked for a batch (model built, loader made).
        steps_at: The steps the trainer logged (every step, or every ``--log-every``).
        step_ends: When each of those steps was logged.
        exited: When the trainer returned.
        fixed: Named fixed costs in seconds measured on this side only (Ray start, MLflow setup).
        cpu: Average cores each role used during the steady state, with its niceness.
        ray_top: The Ray processes that used the most cores in the steady state.
        outside: Cores used by processes outside the benchmark during each step.
        notes: Extra lines for the report.
    """

    name: str
    batch_size: int
    launched: float
    ready: float
    steps_at: list[int]
    step_ends: list[float]
    exited: float
    fixed: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, tuple[float, set[int]]] = field(default_factory=dict)
    ray_top: list[tuple[str, float]] = field(default_factory=list)
    outside: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def segments(self) -> list[tuple[int, int, float, float]]:
        """Logged intervals as ``(first step, last step, start, end)``; the first starts at :attr:`ready`."""
        starts = [(0, self.ready), *zip(self.steps_at, self.step_ends)]
        return [(s0 + 1, s1, t0, t1) for (s0, t0), (s1, t1) in zip(starts, starts[1:])]

    def steady(self, skip: int) -> list[tuple[int, float]]:
        """``(steps, seconds)`` of each logged interval after the first ``skip`` steps."""
        return [(last - first + 1, end - start) for first, last, start, end in self.segments() if first > skip]

    def steady_windows(self, skip: int) -> list[tuple[float, float, int]]:
        """``(start, end, steps)`` of each logged interval after the first ``skip`` steps."""
        return [(start, end, last - first + 1) for first, last, start, end in self.segments() if first > skip]

    def steady_window(self, skip: int) -> tuple[float, float]:
        """Wall-clock start and end of the steady state."""
        start = next(start for first, _, start, _ in self.segments() if first > skip)
        return start, self.step_ends[-1]

    def samples_per_s(self, skip: int) -> float:
        """Steady-state samples per second: steady samples over steady time."""
        steady = self.steady(skip)
        return self.batch_size * sum(n for n, _ in steady) / sum(sec for _, sec in steady)

    def step_times(self, skip: int) -> list[float]:
        """Mean step time of each steady logged interval."""
        return [sec / n for n, sec in self.steady(skip)]

    def median_samples_per_s(self, skip: int) -> float:
        """Batch size over the median steady step time (robust to other load on the machine)."""
        return self.batch_size / statistics.median(self.step_times(skip))

    def first_steps(self) -> tuple[int, float]:
        """``(steps, seconds)`` of the first logged interval (one step when every step is logged)."""
        first, last, start, end = self.segments()[0]
        return last, end - start

    def measure_cpu(self, usage: CpuUsage, skip: int) -> None:
        """Fill :attr:`cpu`, :attr:`ray_top` and :attr:`outside` from a finished sampler."""
        window = self.steady_window(skip)
        self.cpu = usage.cores(*window)
        self.ray_top = usage.top(RAY, *window)
        self.outside = [usage.cores(start, end + usage.interval).get(OTHERS, (0.0, set()))[0]
                        for _, _, start, end in self.segments()]

    def quiet_steady(self, skip: int) -> list[tuple[int, float]]:
        """Steady intervals during which outside processes used under NOISY_CORES."""
        loads = [load for (first, *_), load in zip(self.segments(), self.outside) if first > skip]
        return [seg for seg, load in zip(self.steady(skip), loads) if load < NOISY_CORES]

    def quiet_samples_per_s(self, skip: int) -> float | None:
        """Steady samples/s over the quiet intervals (``None`` when they hold fewer than three steps)."""
        quiet = self.quiet_steady(skip)
        steps = sum(n for n, _ in quiet)
        return self.batch_size * steps / sum(sec for _, sec in quiet) if steps >= MIN_QUIET_STEPS else None

    def others_cores(self) -> float:
        """Cores used in the steady state by processes outside this benchmark."""
        return self.cpu.get(OTHERS, (0.0, set()))[0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="rsvl config or open_clip built-in name")
    parser.add_argument("--pretrained", default=None,
                        help="'packaged', 'none', or a weights file (default: packaged when the model ships weights)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per trainer")
    parser.add_argument("--skip-steps", type=int, default=2, help="first steps left out of the steady state")
    parser.add_argument("--image-size", type=int, default=None,
                        help=f"model input size (default: {CPU_IMAGE_SIZE} on cpu, the model's own on cuda)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (ours: cpus_per_worker)")
    parser.add_argument("--workers", type=int, default=1, help="data loader worker processes, both trainers")
    parser.add_argument("--log-every", type=int, default=1,
                        help="both trainers log (and are timed) every N steps; 1 times each step")
    parser.add_argument("--repeat", type=int, default=1, help="runs per trainer, alternating order; best is shown")
    parser.add_argument("--ours-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment variable for our run only, set before Ray starts so every Ray process "
                             "sees it (e.g. RAY_worker_niceness=0, OMP_WAIT_POLICY=PASSIVE); repeatable")
    parser.add_argument("--ours-workers", type=int, default=0,
                        help="our train.num_workers: 0 = Ray Train local mode (laptop default), 1 = one Ray worker")
    parser.add_argument("--phases", action="store_true",
                        help="one more run of each trainer with --workers 0, timing each phase of its steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default=None, help="keep data, logs and runs here (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.steps < args.skip_steps + 2 * args.log_every + 1:
        parser.error(f"--steps ({args.steps}) leaves fewer than two logged intervals after --skip-steps "
                     f"({args.skip_steps}) at --log-every {args.log_every}")
    for item in args.ours_env:
        if "=" not in item or not item.partition("=")[0]:
            parser.error(f"--ours-env {item!r} is not NAME=VALUE")
    if args.phases and args.ours_workers != 0:
        parser.error("--phases times our trainer in this process, so it needs --ours-workers 0 (Ray Train local mode)")
    if args.image_size is None and args.device == "cpu":
        args.image_size = CPU_IMAGE_SIZE
    return args


def resolve_pretrained(model: str, pretrained: str | None) -> str | None:
    """``None``/``'none'`` -> None; unset -> ``'packaged'`` for models that ship weights, else None."""
    from rsvl.models.architectures import get_architecture

    if pretrained is not None:
        return None if pretrained.lower() == "none" else pretrained
    architecture = get_architecture(model)
    return "packaged" if architecture is not None and architecture.packaged_weights else None


def write_data(work: Path, samples: int, seed: int) -> tuple[Path, Path, int]:
    """Write the optical scenes with at least ``samples`` train images, and open_clip's CSV of them.

    Returns:
        ``(dataset_dir, csv_path, train_images)``.
    """
    import numpy as np
    import pandas as pd

    from rsvl.data.generate import OPTICAL_PER_CLASS, write_optical_scenes
    from rsvl.data.store import read_manifest, relative_to_dataset
    from rsvl.data.synthetic import SPLIT_FRACTIONS, optical_scenes

    classes = len(optical_scenes.DRAWERS)
    per_class = max(OPTICAL_PER_CLASS, math.ceil(samples / (classes * SPLIT_FRACTIONS[0])) + 1)
    dataset_dir = work / "data" / "optical"
    write_optical_scenes(dataset_dir, seed=seed, per_class=per_class)
    train = read_manifest(dataset_dir).query("split == 'train'")
    if len(train) < samples:
        raise RuntimeError(f"{dataset_dir}: {len(train)} train images, fewer than the {samples} the run needs")
    rng = np.random.default_rng(seed)
    rows = [
        (str(relative_to_dataset(dataset_dir, row.image)), row.captions[rng.integers(len(row.captions))])
        for row in train.itertuples()
    ]
    csv_path = work / "open_clip_train.csv"
    pd.DataFrame(rows[:samples], columns=["filepath", "title"]).to_csv(csv_path, index=False)
    return dataset_dir, csv_path, len(train)


def save_initial_weights(args: argparse.Namespace, pretrained: str | None, work: Path) -> Path | None:
    """Save the model ``build_model`` makes as a safetensors file open_clip's ``--pretrained`` takes."""
    if pretrained is None:
        return None
    from rsvl.models import build_model, save_model
    from rsvl.models.io import WEIGHTS_NAME

    model, *_ = build_model(args.model, pretrained, image_size=args.image_size)
    return save_model(model, work / "initial_model") / WEIGHTS_NAME


def open_clip_arguments(args: argparse.Namespace, csv_path: Path, weights: Path | None, logs: Path) -> list[str]:
    """open_clip_train arguments matching our trainer's settings."""
    from rsvl.models.architectures import get_architecture

    train_args = [
        "--train-data", str(csv_path), "--dataset-type", "csv", "--csv-separator", ",",
        "--csv-img-key", "filepath", "--csv-caption-key", "title",
        "--model", args.model, "--batch-size", str(args.batch_size), "--epochs", "1",
        "--workers", str(args.workers), "--device", args.device,
        "--precision", "amp_bf16" if args.device == "cuda" else "fp32",
        "--lr", str(LR), "--wd", str(WEIGHT_DECAY), "--warmup", "0",
        "--beta1", str(BETAS[0]), "--beta2", str(BETAS[1]), "--eps", str(EPS),
        "--grad-clip-norm", str(GRAD_CLIP), "--seed", str(args.seed),
        "--logs", str(logs), "--name", "bench", "--report-to", "", "--save-frequency", "0",
        "--log-every-n-steps", str(args.log_every),
    ]
    if weights is not None:
        train_args += ["--pretrained", str(weights)]
    if args.image_size is not None:
        train_args += ["--force-image-size", str(args.image_size)]
    architecture = get_architecture(args.model)
    if architecture is not None:
        preprocess = architecture.preprocess_cfg
        train_args += ["--image-mean", *map(str, preprocess["mean"]), "--image-std", *map(str, preprocess["std"]),
                       "--image-interpolation", preprocess.get("interpolation", "bicubic")]
    return train_args


def child_env() -> dict[str, str]:
    """This environment with ``src/`` importable and the Hugging Face Hub offline by default."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run_open_clip(args: argparse.Namespace, csv_path: Path, weights: Path | None, run_dir: Path,
                  phases_path: Path | None = None) -> Timings:
    """Run open_clip's training script in a fresh process and read its step events.

    With ``phases_path`` the launcher times its phases (:mod:`phase_timer`) and writes them there.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    events_path, log_path = run_dir / "open_clip_events.jsonl", run_dir / "open_clip.log"
    command = [sys.executable, str(LAUNCHER), str(events_path), str(args.threads),
               *([] if phases_path is None else [str(phases_path)]), "--",
               *open_clip_arguments(args, csv_path, weights, run_dir / "open_clip_logs")]
    launched = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_env(), cwd=run_dir)
        with CpuUsage(trainer_pid=process.pid) as usage:
            code = process.wait()
    exited = time.time()
    if code != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
        raise RuntimeError(f"open_clip_train exited with {code}; last lines of {log_path}:\n" + "\n".join(tail))
    events = [json.loads(line) for line in events_path.read_text(encoding="utf-8").splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    start = next(e["t"] for e in events if e["event"] == "epoch_start")
    data_times = [e["data_time"] for e in steps[args.skip_steps:]]
    timings = Timings(
        name="open_clip", batch_size=args.batch_size, launched=launched, ready=start,
        steps_at=[e["samples"] // args.batch_size for e in steps], step_ends=[e["t"] for e in steps], exited=exited,
        notes=[f"open_clip: median wait for a batch in the steady state {statistics.median(data_times) * 1000:.0f} ms"],
    )
    timings.measure_cpu(usage, args.skip_steps)
    return timings


def run_config(args: argparse.Namespace, pretrained: str | None, run_dir: Path) -> Any:
    """Our RunConfig: ``--ours-workers`` workers with ``threads`` CPUs, no evaluation, a log every ``--log-every`` steps."""
    from rsvl.config import RunConfig

    return RunConfig.model_validate({
        "paper": "closp",
        "profile": "cluster" if args.device == "cuda" else "local",
        "model": {"name": args.model, "pretrained": pretrained, "image_size": args.image_size},
        "train": {
            "epochs": 1, "max_steps": args.steps, "batch_size": args.batch_size, "lr": LR,
            "weight_decay": WEIGHT_DECAY, "warmup_steps": 0, "grad_clip_norm": GRAD_CLIP,
            "num_workers": args.ours_workers, "cpus_per_worker": args.threads, "use_gpu": args.device == "cuda",
            "loader_workers": args.workers, "log_every": args.log_every, "checkpoint_every": args.steps,
            "keep_checkpoints": 1, "max_failures": 0, "storage_path": str(run_dir / "ray_results"),
            "eval_split": None, "eval_baseline": False, "seed": args.seed,
        },
        "mlflow": {"tracking_uri": f"sqlite:///{run_dir / 'mlflow.db'}", "experiment": EXPERIMENT},
    })


def run_ours(args: argparse.Namespace, pretrained: str | None, dataset_dir: Path, run_dir: Path,
             phases_path: Path | None = None) -> Timings:
    """Start Ray (timed; not in local mode) as ``fit`` would, run :func:`rsvl.train.fit`, and read its per-step MLflow metrics.

    With ``phases_path`` the fit's phases are timed in this process (:mod:`phase_timer`; local mode
    only) and written there.
    """
    import ray
    from mlflow import MlflowClient

    from phase_timer import install
    from rsvl.train import fit

    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = run_config(args, pretrained, run_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    extra_env = dict(item.split("=", 1) for item in args.ours_env)
    saved_env = {name: os.environ.get(name) for name in extra_env}
    os.environ.update(extra_env)
    local_mode = cfg.train.num_workers == 0
    started = time.time()
    if not local_mode:
        ray.init(num_cpus=cfg.train.num_workers * cfg.train.cpus_per_worker, include_dashboard=False)
    if phases_path is not None and not local_mode:
        raise ValueError("--phases times our trainer in this process: it needs --ours-workers 0 (Ray Train local mode)")
    timer = install("ours") if phases_path is not None else None
    launched = time.time()
    try:
        with CpuUsage(trainer_pid=os.getpid() if local_mode else None) as usage:
            result = fit(cfg, dataset_dir, run_dir / "ours_out")
    finally:
        exited = time.time()
        if timer is not None:
            timer.uninstall()
            timer.dump(phases_path)
        if not local_mode:
            ray.shutdown()
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    client = MlflowClient(cfg.mlflow.tracking_uri)
    run_started = client.get_run(result.mlflow_run_id).info.start_time / 1000
    ready = client.get_metric_history(result.mlflow_run_id, "trainable_params")[0].timestamp / 1000
    losses = sorted(client.get_metric_history(result.mlflow_run_id, "loss"), key=lambda m: m.step)
    own = sorted(client.get_metric_history(result.mlflow_run_id, "samples_per_s"), key=lambda m: m.step)
    own_steady = [args.batch_size / m.value for m in own[args.skip_steps:]]
    timings = Timings(
        name="ours", batch_size=args.batch_size, launched=launched, ready=ready,
        steps_at=[m.step for m in losses], step_ends=[m.timestamp / 1000 for m in losses], exited=exited,
        fixed={"Ray start": launched - started, "  of which MLflow run setup": run_started - launched},
        notes=[f"ours: the trainer's own samples_per_s, which leaves out its MLflow writes, gives a median step of "
               f"{statistics.median(own_steady):.3f} s"],
    )
    timings.measure_cpu(usage, args.skip_steps)
    return timings


def numbers(t: Timings, skip: int) -> dict[str, Any]:
    """The reported numbers of one trainer run."""
    step_times = t.step_times(skip)
    first_count, first_seconds = t.first_steps()
    return {
        "ray_start_s": t.fixed.get("Ray start"),
        "mlflow_setup_s": t.fixed.get("  of which MLflow run setup"),
        "launch_to_first_batch_s": t.ready - t.launched,
        "first_logged_steps": first_count,
        "first_step_s": first_seconds,
        "last_step_to_exit_s": t.exited - t.step_ends[-1],
        "steps": t.steps_at[-1],
        "samples_per_s": t.samples_per_s(skip),
        "median_samples_per_s": t.median_samples_per_s(skip),
        "quiet_samples_per_s": t.quiet_samples_per_s(skip),
        "quiet_steps": sum(n for n, _ in t.quiet_steady(skip)),
        "steady_steps": sum(n for n, _ in t.steady(skip)),
        "median_step_s": statistics.median(step_times),
        "slowest_step_s": max(step_times),
        "steady_cores": {role: cores for role, (cores, _) in t.cpu.items()},
    }


def summary(args: argparse.Namespace, runs: dict[str, list[Timings]]) -> dict[str, Any]:
    """Per trainer the best of its repeats (highest steady samples/s), every repeat, and the ratios."""
    best = {name: max(group, key=lambda t: t.samples_per_s(args.skip_steps)) for name, group in runs.items()}
    per = {name: numbers(t, args.skip_steps) for name, t in best.items()}
    ours, theirs = per["ours"], per["open_clip"]
    return {
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "work_dir")},
        "trainers": per,
        "repeats": {name: [numbers(t, args.skip_steps) for t in group] for name, group in runs.items()},
        "ratio": ours["samples_per_s"] / theirs["samples_per_s"],
        "ratio_median": ours["median_samples_per_s"] / theirs["median_samples_per_s"],
        "ratio_quiet": (ours["quiet_samples_per_s"] / theirs["quiet_samples_per_s"]
                        if ours["quiet_samples_per_s"] and theirs["quiet_samples_per_s"] else None),
        "best": best,
    }


def _cpu_line(t: Timings) -> str:
    roles = ", ".join(f"{role} {cores:.2f} (nice {'/'.join(map(str, sorted(nice)))})"
                      for role, (cores, nice) in t.cpu.items() if cores >= 0.005)
    return f"  {t.name}: {roles}"


def report(args: argparse.Namespace, pretrained: str | None, train_images: int, result: dict[str, Any]) -> str:
    """The printed table."""
    per, best = result["trainers"], result["best"]

    def row(label: str, key: str, fmt: str = "{:.2f}") -> str:
        cells = ["-" if per[n][key] is None else fmt.format(per[n][key]) for n in ("ours", "open_clip")]
        return f"  {label:<36}{cells[0]:>12}{cells[1]:>12}"

    repeats = args.repeat
    lines = [
        f"train_throughput: {args.model} (pretrained={pretrained}), {args.image_size or 'model'} px, "
        f"batch {args.batch_size}, {args.steps} steps, device {args.device}, torch threads {args.threads}, "
        f"loader workers {args.workers}, our train.num_workers {args.ours_workers}"
        + (" (Ray Train local mode)" if args.ours_workers == 0 else " (Ray Train workers)") + (f", our run with {' '.join(args.ours_env)}" if args.ours_env else ""),
        f"data: {train_images} generated optical train images; {args.steps * args.batch_size} samples per trainer, "
        "one caption per image per step on both sides",
        f"each trainer ran {repeats} time(s), alternating which goes first; the table shows each one's best run",
        "",
        f"  {'':<36}{'ours':>12}{'open_clip':>12}",
        "  fixed costs [s]",
        row("Ray start", "ray_start_s"),
        row("launch -> first batch asked", "launch_to_first_batch_s"),
        row("  of which MLflow run setup", "mlflow_setup_s"),
        row("first step" if args.log_every == 1 else "first logged interval", "first_step_s"),
        *([] if args.log_every == 1 else [row("  steps in it", "first_logged_steps", "{:d}")]),
        row("last step -> trainer returned", "last_step_to_exit_s"),
        f"  steady state, steps {args.skip_steps + 1}-{args.steps}" + (
            "" if args.log_every == 1 else f" (timed every {args.log_every} steps, from the first log after step {args.skip_steps})"),
        row("samples/s (samples / time)", "samples_per_s"),
        row("samples/s (batch / median step)", "median_samples_per_s"),
        row("samples/s (quiet steps only)", "quiet_samples_per_s"),
        row("  quiet steps", "quiet_steps", "{:d}"),
        row("  steady steps timed", "steady_steps", "{:d}"),
        row("median step [s]", "median_step_s", "{:.3f}"),
        row("slowest step [s]" if args.log_every == 1 else "slowest interval, per step [s]", "slowest_step_s", "{:.3f}"),
        "",
        f"ratio ours/open_clip: {result['ratio']:.3f} (samples / time), {result['ratio_median']:.3f} (median step), "
        + (f"{result['ratio_quiet']:.3f} (quiet steps)" if result["ratio_quiet"] else "- (too few quiet steps)"),
        f"  a quiet step is one during which processes outside this benchmark used under {NOISY_CORES} cores",
    ]
    if repeats > 1:
        for name, group in result["repeats"].items():
            lines.append(f"  every run of {name}, samples/s: " + ", ".join(f"{n['samples_per_s']:.2f}" for n in group))
    lines += ["", "CPU use in the steady state, average cores (this machine has " f"{os.cpu_count()}):"]
    lines += [_cpu_line(best[name]) for name in ("ours", "open_clip")]
    if best["ours"].ray_top:
        lines.append("  ours, busiest Ray processes: " + ", ".join(f"{title} {cores:.3f}" for title, cores in best["ours"].ray_top))
    noisy = [t.name for t in best.values() if t.others_cores() > NOISY_CORES]
    if noisy:
        lines.append(f"  WARNING: processes outside this benchmark used more than {NOISY_CORES} cores during "
                     f"{' and '.join(noisy)}; the comparison is not reliable, run it again on a quiet machine")
    lines += [
        "",
        "what differs:",
        "  launch -> first batch: ours is fit() in this process (MLflow run, "
        + ("Ray Train local mode, no Ray instance" if args.ours_workers == 0 else "Ray up, a Ray Train worker process")
        + ",",
        "    model build, dataset read); open_clip's is a fresh Python process (imports, model build, CSV read)",
        "  last step -> return: ours writes a checkpoint, links the model out and into its MLflow run;",
        "    open_clip saves epoch_1.pt (weights and optimizer state)",
        "  images: ours decodes PNG to float32 and crops/flips tensors (rsvl.models.preprocess); open_clip",
        "    crops PIL images without flips; both take a random 90-100% crop resized to the model size",
        "  text: ours tokenizes a batch in the collate function, open_clip one caption per sample",
        f"  logging: every {args.log_every} step(s) ours writes MLflow metrics and a progress line (its own",
        "    default is every 10 steps), open_clip writes a log line",
        "  layout: ours keeps a convolutional image tower's weights channels-last (rsvl.models.layout),",
        "    open_clip the default NCHW",
    ]
    lines += [f"  {note}" for t in best.values() for note in t.notes]
    return "\n".join(lines)


def run_phases(args: argparse.Namespace, pretrained: str | None, dataset_dir: Path, csv_path: Path,
               weights: Path | None, work: Path) -> dict[str, Any]:
    """One run of each trainer with ``--workers 0`` and its phases timed; milliseconds per steady step of each phase.

    Returns:
        ``{"workers": 0, "steps": "<first>-<last>", "trainers": {name: phase_table(...) plus "samples_per_s"}}``.
    """
    phase_args = argparse.Namespace(**{**vars(args), "workers": 0})
    run_dir = work / "phases"
    tables: dict[str, Any] = {}
    for name in ("open_clip", "ours"):
        print(f"phase run: {name} (--workers 0, phases timed) ...", flush=True)
        path = run_dir / f"{name}_phases.json"
        if name == "ours":
            timings = run_ours(phase_args, pretrained, dataset_dir, run_dir, phases_path=path)
        else:
            timings = run_open_clip(phase_args, csv_path, weights, run_dir, phases_path=path)
        table = read_phase_table(path, timings.steady_windows(args.skip_steps))
        table["samples_per_s"] = timings.samples_per_s(args.skip_steps)
        table["others_cores"] = timings.others_cores()
        tables[name] = table
    return {"workers": 0, "steps": f"{args.skip_steps + 1}-{args.steps}", "trainers": tables}


def phase_report(phases: dict[str, Any]) -> str:
    """The per-phase table: exclusive ms per step of each phase, ours and open_clip, and their difference."""
    ours, theirs = phases["trainers"]["ours"], phases["trainers"]["open_clip"]
    lines = [
        f"phases: one more run of each trainer with --workers {phases['workers']} (decode, augment and collate in "
        "the trainer process; the throughput runs above keep their loader workers),",
        f"  steps {phases['steps']}, exclusive time of each phase (the innermost one only) in ms per step:",
        f"  {'phase':<14}{'ours':>10}{'open_clip':>11}{'difference':>12}{'calls/step: ours':>18}{'open_clip':>11}",
    ]
    for name in (*PHASES, OTHER):
        a, b = ours["ms"][name], theirs["ms"][name]
        calls = (f"{ours['calls'][name]:>18.1f}{theirs['calls'][name]:>11.1f}" if name != OTHER else "")
        lines.append(f"  {name:<14}{a:>10.1f}{b:>11.1f}{a - b:>+12.1f}{calls}")
    a, b = ours["step_ms"], theirs["step_ms"]
    lines += [
        f"  {'total (step)':<14}{a:>10.1f}{b:>11.1f}{a - b:>+12.1f}",
        f"  these runs: samples/s ours {ours['samples_per_s']:.2f}, open_clip {theirs['samples_per_s']:.2f} "
        f"(ratio {ours['samples_per_s'] / theirs['samples_per_s']:.3f}); cores used outside the benchmark "
        f"ours {ours['others_cores']:.2f}, open_clip {theirs['others_cores']:.2f}",
        "  difference = ours - open_clip; other = step time no phase covers (the loop itself, the LR schedule, "
        "seeding, logit-scale clamp, message formatting)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Prepare data and weights, run both trainers ``--repeat`` times (and the ``--phases`` runs), print the tables."""
    args = parse_args(argv)
    pretrained = resolve_pretrained(args.model, args.pretrained)
    runs: dict[str, list[Timings]] = {"ours": [], "open_clip": []}
    with tempfile.TemporaryDirectory(prefix="rsvl-bench-") as scratch:
        work = Path(args.work_dir).resolve() if args.work_dir else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        dataset_dir, csv_path, train_images = write_data(work, args.steps * args.batch_size, args.seed)
        weights = save_initial_weights(args, pretrained, work)
        print(f"data and initial weights ready in {work}", flush=True)
        for repeat in range(args.repeat):
            order = ["open_clip", "ours"] if repeat % 2 == 0 else ["ours", "open_clip"]
            for name in order:
                print(f"run {repeat + 1}/{args.repeat}: {name} ...", flush=True)
                run_dir = work / f"run{repeat + 1}"
                if name == "ours":
                    runs[name].append(run_ours(args, pretrained, dataset_dir, run_dir))
                else:
                    runs[name].append(run_open_clip(args, csv_path, weights, run_dir))
        phases = run_phases(args, pretrained, dataset_dir, csv_path, weights, work) if args.phases else None
    result = summary(args, runs)
    print(report(args, pretrained, train_images, result))
    if phases is not None:
        result["phases"] = phases
        print()
        print(phase_report(phases))
    if args.json:
        saved = {k: v for k, v in result.items() if k != "best"}
        Path(args.json).write_text(json.dumps(saved, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
