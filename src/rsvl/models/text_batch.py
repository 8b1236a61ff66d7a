"""Token batches cut to what they hold, for text towers where that changes nothing but the cost.

open_clip's tokenizers pad every text to the model's context length (77, or 248 after
LRSCLIP's stretching, :mod:`rsvl.models.kps`). A Hugging Face text tower masks padding out of
attention and of its pooling, and numbers positions from 0, so the columns after a batch's
longest text change nothing: :func:`trim_padding` drops them. open_clip's own text transformer
adds its whole positional table and reads the end-of-text token by position, so its batches keep
their width.
"""

from __future__ import annotations

import torch
from torch import nn


def hf_pad_id(model: nn.Module) -> int | None:
    """The padding token id of a model's Hugging Face text tower; ``None`` for any other tower.

    Args:
        model: An open_clip model (unwrapped).
    """
    config = getattr(getattr(model, "text", None), "config", None)
    pad = getattr(config, "pad_token_id", None)
    return int(pad) if pad is not None else None


def trim_padding(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Drop the all-padding columns at the end of a token batch when the text tower ignores them.

    Args:
        model: The open_clip model the tokens are for (unwrapped).
        tokens: ``(N, context_length)`` token ids.

    Returns:
        ``tokens[:, :width]``, ``width`` one past the last non-padding column of any row (at least
        1), for a Hugging Face tower; ``tokens`` unchanged otherwise.
    """
    pad = hf_pad_id(model)
    if pad is None or tokens.ndim != 2 or tokens.shape[1] == 0:
        return tokens
    used = (tokens != pad).any(dim=0).nonzero()
    width = int(used.max()) + 1 if len(used) else 1
    return tokens[:, :width]
