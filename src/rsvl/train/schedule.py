"""Learning-rate schedules as functions of the step: warmup + cosine, and one-cycle (CLOSP's).

The multiplier depends on the step alone, so a resumed run gets the same rate at the same step
without any scheduler state beyond the step count (``train.schedule`` chooses).
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine:
    """Multiplier of the base rate before optimizer step ``step`` (0-based).

    Args:
        total_steps: Steps of the whole run.
        warmup_steps: Steps of linear warmup from ``1 / warmup_steps`` to 1.
    """

    def __init__(self, total_steps: int, warmup_steps: int) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must not be negative, got {warmup_steps}")
        self.total_steps = total_steps
        self.warmup_steps = min(warmup_steps, total_steps)

    def __call__(self, step: int) -> float:
        """Return the multiplier at ``step``."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps <= 0:
            return 1.0
        progress = min(step - self.warmup_steps, decay_steps) / decay_steps
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_steps: int) -> LambdaLR:
    """Wrap ``optimizer`` in a warmup + cosine scheduler; call ``step()`` after each optimizer step.

    Args:
        optimizer: The optimizer whose groups' ``lr`` is the base rate.
        total_steps: Steps of the whole run.
        warmup_steps: Linear warmup steps.

    Returns:
        The scheduler; its state dict holds only numbers (loadable with ``weights_only=True``).
    """
    return LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps))


class OneCycle:
    """Multiplier of the base (maximum) rate at ``step`` under PyTorch's ``OneCycleLR`` rule (two phases, cosine).

    The rate rises from ``1 / div_factor`` of the maximum to the maximum by step ``pct_start * total - 1``,
    then falls to ``1 / (div_factor * final_div_factor)`` of it at the last step, each phase a half cosine.

    Args:
        total_steps: Steps of the whole run.
        pct_start: Share of the steps spent rising.
        div_factor: Maximum over starting rate (PyTorch's default 25).
        final_div_factor: Starting over final rate (PyTorch's default 1e4).
    """

    def __init__(self, total_steps: int, pct_start: float = 0.1, div_factor: float = 25.0,
                 final_div_factor: float = 1e4) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        self.start = 1.0 / div_factor
        self.final = self.start / final_div_factor
        self.phases = [(float(pct_start * total_steps) - 1, self.start, 1.0), (total_steps - 1.0, 1.0, self.final)]

    def __call__(self, step: int) -> float:
        """Return the multiplier at ``step``."""
        begin = 0.0
        for index, (end, first, last) in enumerate(self.phases):
            if step <= end or index == len(self.phases) - 1:
                span = end - begin
                fraction = (step - begin) / span if span > 0 else 1.0
                return last + (first - last) / 2.0 * (math.cos(math.pi * fraction) + 1.0)
            begin = end
        raise AssertionError("unreachable: the last phase always answers")


def lr_schedule(optimizer: Optimizer, name: str, total_steps: int, warmup_steps: int, pct_start: float) -> LambdaLR:
    """The scheduler ``train.schedule`` names: ``cosine`` (:class:`WarmupCosine`) or ``onecycle`` (:class:`OneCycle`).

    Args:
        optimizer: The optimizer whose groups' ``lr`` is the base (maximum) rate.
        name: ``cosine`` or ``onecycle``.
        total_steps: Steps of the whole run.
        warmup_steps: Linear warmup steps (``cosine``).
        pct_start: Rising share of the steps (``onecycle``).

    Raises:
        ValueError: An unknown name.
    """
    if name == "cosine":
        return warmup_cosine(optimizer, total_steps, warmup_steps)
    if name == "onecycle":
        return LambdaLR(optimizer, OneCycle(total_steps, pct_start))
    raise ValueError(f"unknown schedule {name!r}; use 'cosine' or 'onecycle'")
