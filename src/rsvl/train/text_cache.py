"""Text features of a frozen text path, computed once per distinct caption (LiT's locked text tower).

With ``trainable.text_tower: freeze`` (the laptop profile's default) the text tower has nothing to
learn and runs in eval mode, so a caption's features are the same every time it is drawn; on the
local model the text forward is about 40% of a step. :class:`FrozenTextCache` replaces the model's
``encode_text`` with one that looks each token row up and encodes only the rows it has not seen.

It switches itself on only when it can prove the text path is frozen and deterministic: at the
first call made with gradients enabled it encodes the batch twice and requires that the output
needs no gradient (no trainable parameter on the path: not a LoRA adapter, not LRSCLIP's
stretched positions) and that both outputs are equal (no dropout). Otherwise every call goes
straight to the model, as before; so does every call while a forward hook sits on a module outside
the image tower (iEBAKER reads the text tower's token states through one). Cached rows are keyed by the token ids, the ``normalize`` flag
and the autocast state, and detached; at most :data:`MAX_ROWS` rows are kept.

The rows outlive one fit: a progression's stages and ablations in one process (the sar stage,
``sar_only`` and ``sar_direct`` all read the SAR captions through the same frozen MiniLM) share
them. Once a cache is switched on it adopts the store of its text path's weights (SHA-256 of
every state entry outside the image tower that takes no gradient, which covers everything a
frozen ``encode_text`` reads), so a caption is encoded once per process and set of weights.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

MAX_ROWS = 65536
"""Rows kept (at 768 float32 dimensions: 192 MiB); later new captions are encoded every time."""
SHARED_PATHS = 2
"""Text paths (weight digests) whose rows the process keeps; the least recently adopted goes first."""

_SHARED: OrderedDict[str, dict[tuple, torch.Tensor]] = OrderedDict()


def clear_shared_rows() -> None:
    """Forget every text path's rows (the next cache starts empty)."""
    _SHARED.clear()


def frozen_path_digest(model: nn.Module) -> str:
    """SHA-256 of the state entries outside the image tower (``visual``) that take no gradient.

    Args:
        model: An open_clip model whose text path is frozen.

    Returns:
        The hex digest: equal digests, equal frozen text features.
    """
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    digest = hashlib.sha256(type(model).__qualname__.encode())
    for name, value in model.state_dict(keep_vars=True).items():
        if name.startswith("visual") or name in trainable:
            continue
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        # as bytes: numpy has no bfloat16
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _shared_rows(digest: str) -> dict[tuple, torch.Tensor]:
    rows = _SHARED.pop(digest, None)
    _SHARED[digest] = rows if rows is not None else {}
    while len(_SHARED) > SHARED_PATHS:
        _SHARED.popitem(last=False)
    return _SHARED[digest]


class FrozenTextCache:
    """``encode_text`` of ``model``, memoised per token row once the text path is proven frozen.

    Attributes:
        active: ``None`` until decided, then whether the cache serves calls.
        hits: Rows served from the cache (not encoded) since it was switched on.
        misses: Rows encoded by the model since then (each new caption once).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.encode = model.encode_text  # the bound method of the model's class
        self.rows: dict[tuple, torch.Tensor] = {}
        # hooks on these (iEBAKER's token capture) need the tower to run: then every call goes through
        self.text_modules = [module for name, module in model.named_modules() if not name.startswith("visual")]
        self.active: bool | None = None
        self.hits = self.misses = 0

    def _decide(self, text: torch.Tensor, normalize: bool) -> torch.Tensor:
        first = self.encode(text, normalize=normalize)
        second = self.encode(text, normalize=normalize)
        self.active = not first.requires_grad and torch.equal(first, second)
        if self.active:
            self.rows = _shared_rows(frozen_path_digest(self.model))
            log.info("text path frozen: each caption's text features are computed once (%d known)", len(self.rows))
            self._store(self._keys(text, normalize), first)
        return first

    @staticmethod
    def _keys(text: torch.Tensor, normalize: bool) -> list[tuple]:
        device = text.device.type
        context = (device, normalize, torch.is_autocast_enabled(device),
                   torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None)
        return [(context, row.tobytes()) for row in text.detach().cpu().numpy()]

    def _store(self, keys: list[tuple], features: torch.Tensor) -> None:
        for key, row in zip(keys, features.detach()):
            if len(self.rows) >= MAX_ROWS:
                break
            self.rows[key] = row

    def _hooked(self) -> bool:
        from torch.nn.modules import module as torch_module

        if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
            return True
        return any(module._forward_hooks or module._forward_pre_hooks for module in self.text_modules)

    def __call__(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        if self.active is False or not isinstance(text, torch.Tensor) or self._hooked():
            return self.encode(text, normalize=normalize)
        if self.active is None:
            if not torch.is_grad_enabled():  # under no_grad nothing shows whether the path trains
                return self.encode(text, normalize=normalize)
            return self._decide(text, normalize)
        keys = self._keys(text, normalize)
        firsts: dict[tuple, int] = {}
        for index, key in enumerate(keys):
            if key not in self.rows:
                firsts.setdefault(key, index)  # a caption twice in one batch is encoded once
        missing = list(firsts.values())
        if missing:
            self.misses += len(missing)
            whole = len(missing) == len(keys)
            fresh = self.encode(text if whole else text[torch.tensor(missing, device=text.device)],
                                normalize=normalize).detach()
            self._store([keys[index] for index in missing], fresh)
            if whole:  # nothing cached in this batch: the model's own output
                return fresh
        found = [self.rows.get(key) for key in keys]
        if any(row is None for row in found):  # past MAX_ROWS: what is not kept is encoded every time
            return self.encode(text, normalize=normalize).detach()
        self.hits += len(keys) - len(missing)
        return torch.stack(found)


def install_text_cache(model: nn.Module) -> FrozenTextCache | None:
    """Put a :class:`FrozenTextCache` in place of ``model.encode_text`` (the model's own, unwrapped).

    Args:
        model: An open_clip model (or a DDP wrapper of one).

    Returns:
        The cache, or ``None`` when the model has no ``encode_text``.
    """
    inner: Any = getattr(model, "module", model)
    if not callable(getattr(inner, "encode_text", None)):
        return None
    if isinstance(inner.encode_text, FrozenTextCache):
        return inner.encode_text
    cache = FrozenTextCache(inner)
    inner.encode_text = cache  # an instance attribute: the model's forward calls self.encode_text
    return cache


def remove_text_cache(model: nn.Module) -> None:
    """Give ``model`` its own ``encode_text`` back."""
    inner: Any = getattr(model, "module", model)
    if isinstance(inner.__dict__.get("encode_text"), FrozenTextCache):
        del inner.encode_text
