"""Run ``open_clip_train.main`` in this process with rsvl's architectures registered, timing each step.

Usage: ``python bench/open_clip_launcher.py EVENTS.jsonl THREADS [PHASES.json] -- <open_clip_train arguments>``.

open_clip's training script resolves ``--model NAME`` through open_clip's registry, so the rsvl
configs under ``models/`` are registered first. Torch gets ``THREADS`` intra-op threads. A logging
handler appends one JSON line per event to ``EVENTS.jsonl`` with the wall-clock time the log record
was made: ``launched`` (before the heavy imports), ``epoch_start`` ("Start epoch"), and ``step`` for
every "Train Epoch" progress line, with the step's ``batch_time`` and ``data_time`` parsed from it.
With ``PHASES.json``, :func:`phase_timer.install` wraps the phase functions (decode, augment,
tokenize, collate, loader, forward, loss, backward, clip, optimizer, logging) before open_clip's
training script is imported, and the slices are written there when it returns.
Nothing in open_clip is changed.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

LAUNCHED = time.time()

STEP_LINE = re.compile(r"Train Epoch: \d+ \[\s*(\d+)/\d+.*Data \(t\): ([\d.]+) Batch \(t\): ([\d.]+),")


class StepEvents(logging.Handler):
    """Append the time of open_clip's epoch-start and per-step log records to a JSON-lines file.

    Args:
        path: The events file (appended to).
    """

    def __init__(self, path: str) -> None:
        super().__init__(level=logging.INFO)
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, event: dict) -> None:
        """Write one event and flush it."""
        self.file.write(json.dumps(event) + "\n")
        self.file.flush()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Start epoch"):
            self.write({"event": "epoch_start", "t": record.created})
            return
        match = STEP_LINE.search(message)
        if match:
            samples, data_time, batch_time = match.groups()
            self.write({"event": "step", "t": record.created, "samples": int(samples),
                        "data_time": float(data_time), "batch_time": float(batch_time)})

    def close(self) -> None:
        self.file.close()
        super().close()


def main(argv: list[str]) -> int:
    """Register rsvl architectures, set threads, attach the event handler and run open_clip's main."""
    split = argv.index("--") if "--" in argv else -1
    if split not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    events_path, threads, train_args = argv[0], int(argv[1]), argv[split + 1:]
    phases_path = argv[2] if split == 3 else None
    events = StepEvents(events_path)
    events.write({"event": "launched", "t": LAUNCHED})

    import torch

    torch.set_num_threads(threads)
    from rsvl.models.architectures import register_architectures

    register_architectures()
    timer = None
    if phases_path is not None:
        from phase_timer import install

        timer = install("open_clip")
    from open_clip_train.main import main as open_clip_main

    logging.getLogger().addHandler(events)
    try:
        result = open_clip_main(train_args)
    finally:
        events.close()
        if timer is not None:
            timer.uninstall()
            timer.dump(phases_path)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
