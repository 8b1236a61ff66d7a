"""LRSCLIP's Knowledge-Preserved Stretching (KPS) of a text tower's positional embeddings.

CLIP's text tower knows 77 positions. KPS (Long-CLIP, LRSCLIP) stretches the table ``P`` to
``keep + factor · (source_length − 1 − keep) + factor`` rows (77 → 248 with ``keep = 20``,
``factor = 4``): the first ``keep`` rows, which pretraining trained well, are copied unchanged; each
later gap ``P[keep + j] → P[keep + j + 1]`` is filled with ``factor`` linear interpolations
``P'[keep + f·j + r] = ((f − r)/f)·P[keep + j] + (r/f)·P[keep + j + 1]``; the last ``factor`` rows
extrapolate past the end, ``P'[T − f + r] = P[s − 1] + (r/f)·(P[s − 1] − P[s − 2])``
(:func:`stretch_positions`). The first ``keep`` rows then stay frozen while the rest train.

Text towers handled (:func:`apply_kps`):

* open_clip's native towers: :class:`open_clip.model.CLIP` holds ``positional_embedding``,
  ``attn_mask`` (the causal mask, rebuilt with open_clip's own builder) and ``context_length`` on
  the model; :class:`open_clip.model.CustomTextCLIP` holds them on ``model.text`` (a
  :class:`open_clip.transformer.TextTransformer`, which also has ``num_pos``). A bidirectional tower
  (``no_causal_mask``, no ``attn_mask``) keeps having none. A tower with a class token
  (``embed_cls``, CoCa) is refused: its last row is the class token's, placed after the text.
* a Hugging Face encoder (the MiniLM tower of ``rsvl-effnetlite0-minilm``): its
  ``embeddings.position_embeddings`` table has 512 rows, of which the packaged tokenizer setting
  (64 tokens) used few. We take its **first** ``source_length`` (77) rows as the source, so the
  operation is exactly the one applied to CLIP and the local profile exercises the same 248-row
  table the cluster's ViT towers get; rows 77..511 are dropped. The encoder's
  ``config.max_position_embeddings`` and its ``position_ids``/``token_type_ids`` buffers become 248
  long, so the saved ``config.json`` rebuilds the same shape.

The kept rows are frozen with a parametrization (:class:`KeptRows`): the stored parameter holds
only the trainable rows and the kept rows are a buffer, so no optimizer (weight decay included)
can move them. The state dict therefore stores ``...parametrizations.<name>.original`` (trained
rows) and ``...parametrizations.<name>.0.kept`` (kept rows) instead of the table itself; the
settings are recorded in ``rsvl_spec["kps"] = {source_length, keep, factor, context_length}`` and
:func:`rebuild_kps` recreates the structure before :func:`rsvl.models.load_model` loads the weights.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import torch
from open_clip.transformer import TextTransformer
from torch import nn
from torch.nn.utils import parametrize

from rsvl.errors import ModelError

SPEC_KEY = "kps"
KPS_DEFAULTS = {"source_length": 77, "keep": 20, "factor": 4}
"""LRSCLIP's setting: 77 positions stretched to 248, the first 20 kept."""


def stretched_length(source_length: int, keep: int, factor: int) -> int:
    """The number of positions KPS produces: ``keep + factor · (source_length − 1 − keep) + factor``.

    Args:
        source_length: Rows of the source table (at least 2).
        keep: Leading rows copied and frozen (``0 <= keep <= source_length − 1``).
        factor: Rows each later source row becomes (at least 1).

    Returns:
        The target length (248 for 77, 20, 4).

    Raises:
        ModelError: An argument is not an integer or is out of its range.
    """
    for name, value in (("source_length", source_length), ("keep", keep), ("factor", factor)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ModelError(f"kps.{name} must be an integer, got {value!r}")
    if source_length < 2:
        raise ModelError(f"kps.source_length must be at least 2 (the last step needs two rows), got {source_length}")
    if not 0 <= keep <= source_length - 1:
        raise ModelError(f"kps.keep must be in [0, source_length - 1 = {source_length - 1}], got {keep}")
    if factor < 1:
        raise ModelError(f"kps.factor must be at least 1, got {factor}")
    return keep + factor * (source_length - 1 - keep) + factor


def kps_settings(cfg: dict[str, Any] | None) -> dict[str, int]:
    """Check a ``kps`` config and complete it with the defaults and the resulting context length.

    Args:
        cfg: ``{"source_length", "keep", "factor"}``, each optional (defaults 77, 20, 4); a recorded
            ``context_length`` is accepted when it equals the computed one.

    Returns:
        ``{"source_length", "keep", "factor", "context_length"}``.

    Raises:
        ModelError: ``cfg`` is not an object, has unknown keys, or breaks :func:`stretched_length`.
    """
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ModelError(f"kps must be an object {{source_length, keep, factor}}, got {cfg!r}")
    unknown = set(cfg) - set(KPS_DEFAULTS) - {"context_length"}
    if unknown:
        raise ModelError(f"kps: unknown keys {sorted(unknown)}; allowed: {sorted(KPS_DEFAULTS)}")
    settings = {key: cfg.get(key, default) for key, default in KPS_DEFAULTS.items()}
    target = stretched_length(settings["source_length"], settings["keep"], settings["factor"])
    if "context_length" in cfg and cfg["context_length"] != target:
        raise ModelError(f"kps.context_length {cfg['context_length']!r} disagrees with the stretch "
                         f"({settings} gives {target})")
    return {**settings, "context_length": target}


def stretch_positions(table: torch.Tensor, keep: int = 20, factor: int = 4) -> torch.Tensor:
    """Stretch a positional-embedding table by KPS (all its rows are the source).

    Computed in float64 and cast back to the table's dtype, so the result depends on the CPU's
    kernels as little as possible.

    Args:
        table: ``(source_length, width)`` positional embeddings.
        keep: Leading rows copied unchanged.
        factor: Rows per later source row.

    Returns:
        A new ``(keep + factor · (source_length − 1 − keep) + factor, width)`` tensor of the
        table's dtype and device, detached.

    Raises:
        ModelError: The table is not 2-D or the arguments break :func:`stretched_length`.
    """
    if table.ndim != 2:
        raise ModelError(f"a positional-embedding table is 2-D (positions, width), got shape {tuple(table.shape)}")
    source_length = table.shape[0]
    stretched_length(source_length, keep, factor)
    source = table.detach().to(torch.float64)
    steps = torch.arange(factor, dtype=torch.float64, device=source.device)
    before, after = ((factor - steps) / factor)[None, :, None], (steps / factor)[None, :, None]
    interior = before * source[keep:-1, None, :] + after * source[keep + 1:, None, :]
    last, step = source[-1], source[-1] - source[-2]
    tail = last[None, :] + (steps / factor)[:, None] * step[None, :]
    stretched = torch.cat([source[:keep], interior.reshape(-1, source.shape[1]), tail])
    return stretched.to(table.dtype)


class KeptRows(nn.Module):
    """Parametrization of a table whose first rows are frozen: ``table = cat(kept, original)``.

    The kept rows live in a (saved) buffer and the parameter holds only the trainable rows. Setting
    ``requires_grad=False`` on part of a tensor is impossible, and masking the gradient would not
    stop AdamW's decoupled weight decay (nor momentum) from moving the kept rows; a parameter that
    does not contain them is the only way no optimizer setting can touch them.

    Args:
        kept: ``(keep, width)`` rows to freeze (copied).
    """

    def __init__(self, kept: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("kept", kept.detach().clone())

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        """The full table: the kept rows, then the trainable ones."""
        return torch.cat([self.kept.to(original.dtype), original])

    def right_inverse(self, table: torch.Tensor) -> torch.Tensor:
        """The trainable part of a full table (what the parameter stores)."""
        return table[self.kept.shape[0]:]


def _native_owner(model: nn.Module) -> nn.Module | None:
    """The module holding a native open_clip text tower's table: ``model`` (CLIP) or ``model.text``."""
    text = getattr(model, "text", None)
    if isinstance(text, TextTransformer):
        return text
    if isinstance(getattr(model, "positional_embedding", None), torch.Tensor) and hasattr(model, "token_embedding"):
        return model
    return None


def _hf_embeddings(model: nn.Module) -> nn.Module | None:
    """A Hugging Face text encoder's embeddings module (with ``position_embeddings``), if any."""
    embeddings = getattr(getattr(getattr(model, "text", None), "transformer", None), "embeddings", None)
    if isinstance(getattr(embeddings, "position_embeddings", None), nn.Embedding):
        return embeddings
    return None


def _table_of(model: nn.Module) -> tuple[nn.Module, str, str]:
    """``(owner, attribute, kind)`` of the text tower's positional table; kind ``native`` or ``hf``."""
    owner = _native_owner(model)
    if owner is not None:
        if getattr(owner, "cls_emb", None) is not None:
            raise ModelError("KPS supports text towers without a class token; this one has embed_cls "
                             "(CoCa), whose last position belongs to the class token after the text")
        return owner, "positional_embedding", "native"
    embeddings = _hf_embeddings(model)
    if embeddings is not None:
        return embeddings.position_embeddings, "weight", "hf"
    raise ModelError(f"{type(model).__name__} has no text positional table KPS knows (open_clip's CLIP/"
                     "CustomTextCLIP text transformer, or a Hugging Face encoder's embeddings.position_embeddings)")


def text_positions(model: nn.Module) -> torch.Tensor:
    """The effective positional-embedding table of a model's text tower (after any parametrization).

    Args:
        model: An open_clip CLIP/CustomTextCLIP (native or Hugging Face text tower).

    Returns:
        The ``(positions, width)`` table the tower adds to its token embeddings.

    Raises:
        ModelError: No known text positional table.
    """
    owner, name, _ = _table_of(model)
    return getattr(owner, name)


def stretched_rows(model: nn.Module) -> nn.Parameter | None:
    """The trainable rows of a stretched text table (the parametrization's stored parameter), if any.

    Args:
        model: An open_clip model (unwrapped).

    Returns:
        The ``(context_length - keep, width)`` parameter, or ``None`` when the model's text table is
        not stretched (or the model has none KPS knows).
    """
    try:
        owner, name, _ = _table_of(model)
    except ModelError:
        return None
    if not parametrize.is_parametrized(owner, name):
        return None
    return owner.parametrizations[name].original


def _freeze_leading_rows(owner: nn.Module, name: str, keep: int) -> None:
    table = getattr(owner, name)
    parametrize.register_parametrization(owner, name, KeptRows(table[:keep]))


def _set_native_context(model: nn.Module, owner: nn.Module, table: torch.Tensor, length: int) -> None:
    """Give a native tower a ``length``-row table (same requires_grad) and the mask and lengths to match."""
    owner.positional_embedding = nn.Parameter(table, requires_grad=owner.positional_embedding.requires_grad)
    if getattr(owner, "attn_mask", None) is not None:
        # open_clip's causal-mask builder reads only num_pos, so it builds the mask of any length
        mask = TextTransformer.build_causal_mask(SimpleNamespace(num_pos=length))
        owner.attn_mask = mask.to(device=owner.attn_mask.device, dtype=owner.attn_mask.dtype)
    if hasattr(owner, "num_pos"):
        owner.num_pos = length
    owner.context_length = length
    model.context_length = length


def _set_hf_positions(model: nn.Module, embeddings: nn.Module, table: torch.Tensor) -> None:
    """Replace a Hugging Face encoder's position table and everything sized by it."""
    length = table.shape[0]
    old = embeddings.position_embeddings
    replacement = nn.Embedding(length, table.shape[1], device=table.device, dtype=table.dtype)
    with torch.no_grad():
        replacement.weight.copy_(table)
    replacement.weight.requires_grad_(old.weight.requires_grad)
    embeddings.position_embeddings = replacement
    # non-persistent buffers sized by max_position_embeddings; assigning keeps them non-persistent
    if isinstance(getattr(embeddings, "position_ids", None), torch.Tensor):
        device = embeddings.position_ids.device
        embeddings.position_ids = torch.arange(length, device=device).expand((1, -1))
    if isinstance(getattr(embeddings, "token_type_ids", None), torch.Tensor):
        embeddings.token_type_ids = torch.zeros((1, length), dtype=embeddings.token_type_ids.dtype,
                                                device=embeddings.token_type_ids.device)
    model.text.transformer.config.max_position_embeddings = length
    model.text.context_length = length
    model.context_length = length


def _with_context(spec: dict[str, Any], length: int) -> dict[str, Any]:
    model_cfg = copy.deepcopy(spec["model_cfg"])
    model_cfg["text_cfg"]["context_length"] = length
    return model_cfg


def apply_kps(model: nn.Module, kps_cfg: dict[str, Any] | None) -> dict[str, int]:
    """Stretch a model's text positional table by KPS in place and freeze its first ``keep`` rows.

    The context length becomes the stretched length everywhere it lives (the model, the text tower,
    the causal mask, a Hugging Face config and its position buffers, and ``rsvl_spec["model_cfg"]``),
    and the settings are recorded in ``rsvl_spec["kps"]`` when the model carries a spec.

    Args:
        model: An open_clip CLIP or CustomTextCLIP built by :func:`rsvl.models.build_model`.
        kps_cfg: ``{"source_length", "keep", "factor"}`` (see :func:`kps_settings`).

    Returns:
        The settings, ``{"source_length", "keep", "factor", "context_length"}``.

    Raises:
        ModelError: Bad settings, a tower KPS does not handle, a table shorter than
            ``source_length``, or a table already stretched.
    """
    settings = kps_settings(kps_cfg)
    source_length, keep, target = settings["source_length"], settings["keep"], settings["context_length"]
    owner, name, kind = _table_of(model)
    if parametrize.is_parametrized(owner, name):
        raise ModelError("the text positional table is already parametrized (KPS applied twice?)")
    table = getattr(owner, name)
    if table.shape[0] < source_length:
        raise ModelError(f"KPS needs a text tower with at least source_length={source_length} positions; "
                         f"this one has {table.shape[0]}")
    stretched = stretch_positions(table[:source_length], keep, settings["factor"])
    if kind == "native":
        _set_native_context(model, owner, stretched, target)
    else:
        _set_hf_positions(model, _hf_embeddings(model), stretched)
        owner = model.text.transformer.embeddings.position_embeddings
    _freeze_leading_rows(owner, name, keep)
    spec = getattr(model, "rsvl_spec", None)
    if spec is not None:
        model.rsvl_spec = {**spec, SPEC_KEY: settings, "model_cfg": _with_context(spec, target)}
    return settings


def set_text_context_length(model: nn.Module, length: int) -> None:
    """Shorten a native text tower to its first ``length`` positions (no KPS), in place.

    A Hugging Face tower is left as it is: its context length is only the tokenizer's truncation,
    which ``rsvl_spec["model_cfg"]["text_cfg"]["context_length"]`` sets (updated here).

    Args:
        model: An open_clip CLIP or CustomTextCLIP built by :func:`rsvl.models.build_model`.
        length: The new context length, at most the table's rows for a native tower.

    Raises:
        ModelError: ``length`` is not a positive integer or exceeds a native tower's table, or the
            tower's table is parametrized (stretched).
    """
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ModelError(f"text_context_length must be a positive integer, got {length!r}")
    owner, name, kind = _table_of(model)
    if parametrize.is_parametrized(owner, name):
        raise ModelError("the text positional table is stretched (KPS); its context length is fixed")
    table = getattr(owner, name)
    if table.shape[0] < length:
        raise ModelError(f"text_context_length={length} exceeds the text tower's {table.shape[0]} positions")
    if kind == "native":
        _set_native_context(model, owner, table.detach()[:length].clone(), length)
    spec = getattr(model, "rsvl_spec", None)
    if spec is not None:
        model.rsvl_spec = {**spec, "model_cfg": _with_context(spec, length)}


def rebuild_kps(model: nn.Module, spec: dict[str, Any]) -> None:
    """Recreate the KPS structure a saved model's spec records (before its weights load).

    The model must already have the stretched shape (its saved ``model_cfg`` and, for a Hugging
    Face tower, its saved ``config.json`` say 248 positions); only the frozen-rows
    parametrization is added, with placeholder kept rows the weights then overwrite. No-op when
    the spec records no KPS.

    Args:
        model: The model created from the saved config, weights not loaded yet.
        spec: The saved ``rsvl`` section (``model.rsvl_spec``).

    Raises:
        ModelError: The recorded settings are invalid or the table does not have the recorded length.
    """
    recorded = spec.get(SPEC_KEY)
    if not recorded:
        return
    settings = kps_settings(recorded)
    owner, name, _ = _table_of(model)
    rows = getattr(owner, name).shape[0]
    if rows != settings["context_length"]:
        raise ModelError(f"the saved spec records KPS to {settings['context_length']} positions but the "
                         f"rebuilt text tower has {rows}")
    _freeze_leading_rows(owner, name, settings["keep"])
