"""Learning-rate schedule: linear warmup, then cosine decay to zero, as a function of the step.

The multiplier depends on the step alone, so a resumed run gets the same rate at the same step
without any scheduler state beyond the step count.
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
