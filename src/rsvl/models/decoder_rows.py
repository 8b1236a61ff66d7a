"""Project only the decoder positions a caller reads onto a CoCa's 49,408-token vocabulary.

open_clip's ``MultimodalTransformer`` ends ``ln_final(x) @ text_projection`` over every position.
Two callers read few of them: beam search reads each prefix's last position, and the captioning
loss reads the positions whose label is not padding. A forward hook on the decoder's final layer
norm hands the projection only those rows, so the logits come out for them alone: on the local
captioner the full projection was two thirds of generation time, and in training it, the zero-filled
gradient of the padding rows and their backward product were a third of a step.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from rsvl.errors import ModelError


@contextmanager
def decoder_rows(model: nn.Module, select: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """While inside, the CoCa decoder's logits are ``select(states) @ text_projection``.

    Args:
        model: An open_clip CoCa, or a wrapper with it in ``module`` (DDP).
        select: Takes the ``(batch, positions, width)`` normalised decoder states and returns the
            rows to project (``states[:, -1:]`` keeps the shape; ``states[mask]`` flattens it).

    Raises:
        ModelError: The model has no multimodal decoder.
    """
    decoder = getattr(getattr(model, "module", model), "text_decoder", None)
    if decoder is None or not isinstance(getattr(decoder, "ln_final", None), nn.Module):
        raise ModelError(f"{type(model).__name__} has no CoCa text decoder ending in ln_final")
    handle = decoder.ln_final.register_forward_hook(lambda _module, _args, states: select(states))
    try:
        yield
    finally:
        handle.remove()
