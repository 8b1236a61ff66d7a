"""Pretrained weights: tower files shipped in packages, and open_clip tags checked against the cache.

Packaged tower files load into a named submodule in one of two ways:

* ``match: "name"``: keys equal the submodule's state-dict keys (after ``drop_prefixes``);
* ``match: "order"``: keys differ but the tensors come in the submodule's order (a checkpoint of the
  same network written by another implementation); they are paired one by one, and every pair
  must agree in shape.

Either way the load is strict: a key left over on either side is an error. ``.safetensors`` files
are read with safetensors; ``.pth``/``.pt``/``.bin`` files with ``torch.load(weights_only=True)``,
which refuses pickled code.

An open_clip tag (``openai``, ``laion2b_s32b_b79k``) is looked up in the local cache before open_clip
is called, so an offline machine without the weights fails at once with a fix instead of waiting
on network retries.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from torch import nn

from rsvl.errors import ModelError, WeightsNotCachedError
from rsvl.models.architectures import PackagedWeights

TRUTHY = {"1", "true", "yes", "on"}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a tensor file without running pickled code.

    Args:
        path: A ``.safetensors`` file, or a ``.pth``/``.pt``/``.bin`` state dict.

    Returns:
        Its tensors by key, in file order.

    Raises:
        ModelError: The file is missing, unreadable or not a mapping of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: weights file does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors and torch raise many unrelated types for a bad file
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found:  # torch's own text suggests weights_only=False, which would run the file's code
            raise ModelError(f"{path}: refused, the file holds pickled Python objects besides tensors "
                             f"({found.group(1)}), which could run code when loaded; only tensors are read from "
                             "weight files (convert a trusted copy to .safetensors)") from err
        raise ModelError(f"{path}: cannot read weights ({type(err).__name__}: {err})") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: expected a mapping of tensors")
    return state


def _map_in_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], where: str) -> dict:
    if len(source) != len(target):
        raise ModelError(f"{where}: {len(source)} tensors in the file, {len(target)} in the module")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ModelError(
                f"{where}: tensor {src_key!r} {tuple(tensor.shape)} "
                f"does not fit {dst_key!r} {tuple(expected.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def load_packaged(model: nn.Module, entry: PackagedWeights) -> None:
    """Load one packaged weights file into ``model.<entry.module>``, strictly.

    Args:
        model: The open_clip model.
        entry: The file, the submodule path, the matching rule and the keys to drop.

    Raises:
        ModelError: The file cannot be read, or its tensors do not fill the submodule exactly.
    """
    module = model.get_submodule(entry.module)
    where = f"{entry.file} -> {entry.module}"
    source = {k: v for k, v in read_state_dict(entry.file).items() if not k.startswith(entry.drop_prefixes)}
    target = module.state_dict()
    state = _map_in_order(source, target, where) if entry.match == "order" else source
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{where}: {err}") from err


def hub_offline() -> bool:
    """True when the Hugging Face Hub must not be contacted (``HF_HUB_OFFLINE``)."""
    return hf_constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUTHY


def _hub_candidates(hf_hub: str) -> tuple[str, list[str]]:
    repo_id, filename = os.path.split(hf_hub)
    filename = filename or HF_WEIGHTS_NAME
    names = [HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else []
    if filename.endswith((".bin", ".pth")) and filename != HF_WEIGHTS_NAME:
        names.append(filename[:-4] + ".safetensors")
    return repo_id, names + [filename]


def cached_weights(pretrained_cfg: dict[str, Any], cache_dir: str | None = None) -> str | None:
    """Return the local file open_clip would load for a tag, or ``None`` when it is not cached.

    Mirrors open_clip's choice: the Hugging Face repo when the tag has one (safetensors first),
    else the URL's file under ``cache_dir`` or ``~/.cache/clip``.

    Args:
        pretrained_cfg: ``open_clip.get_pretrained_cfg(model, tag)``.
        cache_dir: The cache folder given to open_clip (``None``: its defaults).
    """
    if pretrained_cfg.get("file"):
        return pretrained_cfg["file"] if os.path.isfile(pretrained_cfg["file"]) else None
    if pretrained_cfg.get("hf_hub"):
        repo_id, names = _hub_candidates(pretrained_cfg["hf_hub"])
        for name in names:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str):
                return found
        return None
    url = pretrained_cfg.get("url", "")
    target = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(url)
    return str(target) if url and target.is_file() else None


def where_tag_lives(pretrained_cfg: dict[str, Any], cache_dir: str | None = None) -> str:
    """Describe where open_clip looks for a tag's weights (for error messages)."""
    if pretrained_cfg.get("hf_hub"):
        repo_id, names = _hub_candidates(pretrained_cfg["hf_hub"])
        cache = cache_dir or hf_constants.HF_HUB_CACHE
        return f"Hugging Face repo {repo_id} ({' or '.join(names)}) in cache {cache}"
    return f"{pretrained_cfg.get('url', '?')} in {cache_dir or Path.home() / '.cache' / 'clip'}"


def ensure_tag_available(
    name: str, tag: str, pretrained_cfg: dict[str, Any], cache_dir: str | None = None
) -> None:
    """Fail at once when a tag's weights are neither cached nor downloadable.

    Args:
        name: open_clip model name (``ViT-B-32``).
        tag: Pretrained tag (``openai``).
        pretrained_cfg: The tag's open_clip config.
        cache_dir: The cache folder given to open_clip.

    Raises:
        WeightsNotCachedError: Offline and not cached; the message says how to provide them.
    """
    if not hub_offline() or cached_weights(pretrained_cfg, cache_dir) is not None:
        return
    raise WeightsNotCachedError(
        f"pretrained weights for model {name!r}, tag {tag!r} are not cached and the Hugging Face Hub is "
        f"offline (HF_HUB_OFFLINE=1). Looked for {where_tag_lives(pretrained_cfg, cache_dir)}. Provide them by "
        f"either (1) on a machine with network, running open_clip.create_model({name!r}, pretrained={tag!r}) "
        "(or `huggingface-cli download <repo> <file>`) and copying the Hugging Face cache here, pointing HF_HOME "
        "(or HF_HUB_CACHE) at it; or (2) passing a local weights file as pretrained=/path/to/weights.safetensors."
    )
