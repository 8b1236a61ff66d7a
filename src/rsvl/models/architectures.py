"""Architecture configs shipped in ``rsvl/models/configs/`` registered with open_clip by name.

Each ``configs/<name>.json`` holds:

* ``model_cfg``: an open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``);
* ``preprocess_cfg``: image mean/std (0..1 units) and interpolation of the RGB towers;
* ``packaged_weights``: tower weights shipped inside installed Python packages, each
  ``{"module", "file", "match": "name"|"order", "drop_prefixes"}`` (see :mod:`rsvl.models.weights`);
* ``sensor_weights`` (optional): per-sensor weights of one image-tower submodule, sensor name →
  ``{"module", "repo", "revision", "file", "match", "drop_prefixes", "bands", "normalisation"}``,
  loaded by ``pretrained="sensor"`` (see :mod:`rsvl.models.sensor_weights`). ``file`` is a file of
  the Hugging Face repo ``repo`` at ``revision`` (a pinned commit, optional), or, without ``repo``,
  a local path (``pkg:``, absolute, or relative to the config file); ``bands`` names the input
  bands of the file's first convolution in channel order; ``normalisation`` (optional,
  ``{"mean", "std"}`` per file band) is the input scaling the weights were trained with and
  replaces the dataset's band statistics for that tower;
* ``description``: why the architecture looks the way it does.

A **derived** config instead names another architecture and one change to its text tower:
``{"description", "base", "kps": {"source_length", "keep", "factor"}}`` stretches the base's
positional embeddings by LRSCLIP's KPS (:mod:`rsvl.models.kps`), and
``{"description", "base", "text_context_length": N}`` only changes the context length (a native
tower keeps its first N positions; a Hugging Face tower truncates its tokenizer at N). ``base`` is a
plain rsvl config (of the same folder or the packaged one) or an open_clip built-in;
:func:`rsvl.models.build_model` builds the base with the same arguments, then applies the change.
The derived model config (the base's with the new ``text_cfg.context_length``) is registered with
open_clip too, so ``open_clip.get_tokenizer(name)`` truncates at the new length.

Paths into installed packages are written ``pkg:<module>/<path inside it>`` because
site-packages differs per machine; they are resolved here, at registration, without importing
the package. The configs are package data (as open_clip ships its own), so any install has them;
``$RSVL_MODELS_DIR`` names an extra folder of a user's own configs, registered beside them (a
name taken by a packaged config is refused). The paper architectures (``ViT-B-32``, ``ViT-L-14``, ``ViT-H-14``,
``coca_ViT-B-32``, ``coca_ViT-L-14``) are open_clip built-ins and need no file here.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import open_clip

from rsvl.errors import ModelError
from rsvl.models.bands import canonical_band
from rsvl.models.kps import kps_settings

MODELS_DIR_ENV = "RSVL_MODELS_DIR"
PACKAGE_PREFIX = "pkg:"
PLAIN_KEYS = {"description", "model_cfg", "preprocess_cfg", "packaged_weights", "sensor_weights"}
DERIVED_KEYS = {"description", "base", "kps", "text_context_length"}
CONFIG_KEYS = PLAIN_KEYS | DERIVED_KEYS
DEFAULT_CONTEXT_LENGTH = 77
"""open_clip's ``CLIPTextCfg.context_length`` when a native ``text_cfg`` names none."""
ENTRY_KEYS = {"module", "file", "match", "drop_prefixes"}
SENSOR_ENTRY_KEYS = ENTRY_KEYS | {"repo", "revision", "bands", "normalisation"}
SENSOR_REQUIRED_KEYS = {"module", "file", "match", "bands"}
RESOLVED_TEXT_KEYS = ("hf_model_name", "hf_tokenizer_name")

_REGISTERED: dict[Path, dict[str, "Architecture"]] = {}
_BROKEN: dict[Path, dict[str, str]] = {}
_RESOLVED_DIRS: list[tempfile.TemporaryDirectory] = []


@dataclass(frozen=True)
class PackagedWeights:
    """One weights file inside an installed package and the submodule it fills."""

    module: str
    file: str
    match: str
    drop_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SensorWeights:
    """One sensor's weights for an image-tower submodule, from a Hugging Face repo or a local file.

    Attributes:
        module: Submodule they fill (``visual.trunk``).
        file: File name inside ``repo``, or a resolved local path when ``repo`` is ``None``.
        match: ``"name"`` or ``"order"``, as for :class:`PackagedWeights`.
        bands: Input bands of the file's first convolution, in channel order.
        repo: Hugging Face repo id (``torchgeo/resnet50_sentinel2_all_moco``), or ``None``.
        revision: Pinned commit of ``repo`` (``None``: its default branch).
        drop_prefixes: File keys to leave out (``fc.``, a classifier the tower does not have).
        normalisation: ``{"mean": [...], "std": [...]}`` per file band, or ``None`` (the dataset's).
    """

    module: str
    file: str
    match: str
    bands: tuple[str, ...]
    repo: str | None = None
    revision: str | None = None
    drop_prefixes: tuple[str, ...] = ()
    normalisation: dict[str, tuple[float, ...]] | None = None

    def source(self) -> str:
        """Where the weights come from, for messages and the saved spec (``repo@revision/file`` or the path)."""
        if self.repo is None:
            return self.file
        return f"{self.repo}{'@' + self.revision if self.revision else ''}/{self.file}"


@dataclass(frozen=True)
class Architecture:
    """A registered architecture with its package paths resolved.

    A derived architecture (``base`` set) has its base's ``preprocess_cfg``, packaged and sensor
    weights, and the base's ``model_cfg`` with the derived ``text_cfg.context_length``; ``kps``
    holds its checked KPS settings (:func:`rsvl.models.kps.kps_settings`) or ``None``, and
    ``text_context_length`` the config's own value or ``None``.
    """

    name: str
    path: Path
    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any]
    packaged_weights: tuple[PackagedWeights, ...] = field(default_factory=tuple)
    description: str = ""
    sensor_weights: dict[str, SensorWeights] = field(default_factory=dict)
    base: str | None = None
    kps: dict[str, int] | None = None
    text_context_length: int | None = None

    @property
    def derived(self) -> bool:
        """True for a config that names a ``base`` architecture and changes its text tower."""
        return self.base is not None


PACKAGED_DIR = Path(__file__).resolve().parent / "configs"


def models_dirs() -> list[Path]:
    """Return the folders of architecture configs: the packaged one, then ``$RSVL_MODELS_DIR`` if set."""
    extra = os.environ.get(MODELS_DIR_ENV)
    return [PACKAGED_DIR] + ([Path(extra).resolve()] if extra else [])


def resolve_package_path(reference: str, where: str) -> str:
    """Turn ``pkg:<module>/<relative path>`` into an absolute path inside the installed package.

    Args:
        reference: The placeholder; any other string is returned unchanged.
        where: ``file:field`` named in the error message.

    Returns:
        The absolute path as a string.

    Raises:
        ModelError: The package is not installed or the path does not exist inside it.
    """
    if not reference.startswith(PACKAGE_PREFIX):
        return reference
    module, _, relative = reference[len(PACKAGE_PREFIX):].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"{where}: package {module!r} is not installed (needed for {reference!r})")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise ModelError(f"{where}: {relative!r} does not exist in package {module!r} ({path})")
    return str(path)


def _require(condition: bool, where: str, rule: str) -> None:
    if not condition:
        raise ModelError(f"{where}: {rule}")


def _packaged(entries: Any, where: str) -> tuple[PackagedWeights, ...]:
    _require(isinstance(entries, list), where, "packaged_weights must be a list")
    result = []
    for index, entry in enumerate(entries):
        at = f"{where}:packaged_weights[{index}]"
        _require(isinstance(entry, dict), at, "must be an object")
        _require(set(entry) <= ENTRY_KEYS, at, f"unknown keys {sorted(set(entry) - ENTRY_KEYS)}")
        _require(entry.get("match") in ("name", "order"), at, "match must be 'name' or 'order'")
        result.append(
            PackagedWeights(
                module=entry["module"],
                file=resolve_package_path(entry["file"], f"{at}.file"),
                match=entry["match"],
                drop_prefixes=tuple(entry.get("drop_prefixes", ())),
            )
        )
    return tuple(result)


def _names(value: Any, at: str, what: str) -> tuple[str, ...]:
    _require(isinstance(value, list) and all(isinstance(v, str) and v for v in value), at,
             f"{what} must be a list of non-empty strings")
    return tuple(value)


def _sensor_normalisation(value: Any, bands: int, at: str) -> dict[str, tuple[float, ...]] | None:
    if value is None:
        return None
    _require(isinstance(value, dict) and set(value) == {"mean", "std"}, at, "normalisation must be {mean, std}")
    result = {}
    for key in ("mean", "std"):
        numbers = value[key]
        _require(isinstance(numbers, list) and len(numbers) == bands
                 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers),
                 at, f"normalisation.{key} must list one number per band ({bands})")
        result[key] = tuple(float(v) for v in numbers)
    _require(all(s > 0 for s in result["std"]), at, "normalisation.std must be positive")
    return result


def _sensor_entry(entry: Any, at: str, folder: Path) -> SensorWeights:
    _require(isinstance(entry, dict), at, "must be an object")
    _require(set(entry) <= SENSOR_ENTRY_KEYS, at, f"unknown keys {sorted(set(entry) - SENSOR_ENTRY_KEYS)}")
    _require(SENSOR_REQUIRED_KEYS <= set(entry), at, f"missing keys {sorted(SENSOR_REQUIRED_KEYS - set(entry))}")
    _require(entry["match"] in ("name", "order"), at, "match must be 'name' or 'order'")
    bands = _names(entry["bands"], at, "bands")
    _require(len({canonical_band(b) for b in bands}) == len(bands), at, f"bands {list(bands)} repeat a name")
    repo = entry.get("repo")
    _require(repo is None or (isinstance(repo, str) and repo.count("/") == 1), at, "repo must be 'owner/name'")
    file = entry["file"]
    _require(isinstance(file, str) and file, at, "file must be a non-empty string")
    if repo is None:  # a local file: pkg:, absolute, or beside the config
        file = resolve_package_path(file, f"{at}.file")
        file = str(file if Path(file).is_absolute() else (folder / file).resolve())
    return SensorWeights(
        module=entry["module"], file=file, match=entry["match"], bands=bands, repo=repo,
        revision=entry.get("revision"), drop_prefixes=_names(entry.get("drop_prefixes", []), at, "drop_prefixes"),
        normalisation=_sensor_normalisation(entry.get("normalisation"), len(bands), at),
    )


def _sensor_weights(entries: Any, where: str, folder: Path) -> dict[str, SensorWeights]:
    _require(isinstance(entries, dict), where, "sensor_weights must be an object: sensor name -> weights")
    return {sensor: _sensor_entry(entry, f"{where}:sensor_weights.{sensor}", folder)
            for sensor, entry in entries.items()}


def _read_config(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: not a readable JSON architecture config ({err})") from err
    _require(isinstance(raw, dict), str(path), "top level must be an object")
    return raw


def load_architecture(path: str | Path, bases: Mapping[str, "Architecture | str"] | None = None) -> Architecture:
    """Read, check and resolve one architecture config file.

    Args:
        path: ``<folder>/<name>.json``; the file stem is the architecture name.
        bases: For a derived config, the rsvl architectures its ``base`` may name, by name (a string
            value is the reason that name cannot be used); any other base must be an open_clip
            built-in. Default: none.

    Returns:
        The :class:`Architecture` with every ``pkg:`` reference resolved.

    Raises:
        ModelError: The file is not JSON, breaks the layout above, or names a missing package or an
            unusable base.
    """
    path = Path(path)
    raw = _read_config(path)
    where = str(path)
    _require(set(raw) <= CONFIG_KEYS, where, f"unknown top-level keys {sorted(set(raw) - CONFIG_KEYS)}")
    if "base" in raw:
        return _derived_architecture(path, raw, bases or {})
    derived_only = sorted(set(raw) & (DERIVED_KEYS - PLAIN_KEYS))
    _require(not derived_only, where, f"{derived_only} change a base architecture; name it with 'base' "
                                      "(and leave out model_cfg)")
    model_cfg = raw.get("model_cfg")
    _require(
        isinstance(model_cfg, dict) and {"embed_dim", "vision_cfg", "text_cfg"} <= set(model_cfg),
        where,
        "model_cfg must hold embed_dim, vision_cfg and text_cfg",
    )
    text_cfg = model_cfg["text_cfg"]
    for key in RESOLVED_TEXT_KEYS:
        if isinstance(text_cfg.get(key), str):
            text_cfg[key] = resolve_package_path(text_cfg[key], f"{where}:model_cfg.text_cfg.{key}")
    preprocess_cfg = raw.get("preprocess_cfg", {})
    _require(isinstance(preprocess_cfg, dict), where, "preprocess_cfg must be an object")
    return Architecture(
        name=path.stem,
        path=path,
        model_cfg=model_cfg,
        preprocess_cfg=preprocess_cfg,
        packaged_weights=_packaged(raw.get("packaged_weights", []), where),
        description=raw.get("description", ""),
        sensor_weights=_sensor_weights(raw.get("sensor_weights", {}), where, path.parent),
    )


def _base_of(base: Any, bases: Mapping[str, "Architecture | str"], where: str) -> tuple[Architecture | None, dict]:
    """The base architecture (``None`` for an open_clip built-in) and a copy of its model config."""
    _require(isinstance(base, str) and bool(base), where, "base must name an architecture")
    found = bases.get(base)
    if isinstance(found, str):
        raise ModelError(f"{where}: base {base!r} cannot be used: {found}")
    if isinstance(found, Architecture):
        _require(not found.derived, where, f"base {base!r} is itself derived (from {found.base!r}); "
                                           "name a plain architecture")
        return found, copy.deepcopy(found.model_cfg)
    model_cfg = open_clip.get_model_config(base)
    _require(model_cfg is not None, where, f"unknown base {base!r}: neither an rsvl architecture "
                                           f"({sorted(bases)}) nor an open_clip built-in (open_clip.list_models())")
    return None, copy.deepcopy(model_cfg)


def _hf_positions(hf_model_name: str) -> int | None:
    """``max_position_embeddings`` of a local Hugging Face model folder (``None`` when not local)."""
    config = Path(hf_model_name) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None


def _text_positions(text_cfg: dict[str, Any], base: str, where: str) -> int | None:
    """Rows of the base text tower's positional table (``None`` when it cannot be known here)."""
    if text_cfg.get("hf_model_name"):
        return _hf_positions(text_cfg["hf_model_name"])
    _require(not text_cfg.get("embed_cls"), where, f"base {base!r} has a text class token (embed_cls, CoCa); "
                                                   "its context length cannot be changed")
    return int(text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH))


def _derived_architecture(path: Path, raw: dict[str, Any], bases: Mapping[str, "Architecture | str"]) -> Architecture:
    where = str(path)
    plain_only = sorted(set(raw) - DERIVED_KEYS)
    _require(not plain_only, where, f"a derived config (with base) takes only {sorted(DERIVED_KEYS)}; "
                                    f"{plain_only} come from the base")
    kps, length = raw.get("kps"), raw.get("text_context_length")
    _require(kps is not None or length is not None, where, "a derived config needs kps or text_context_length")
    base, model_cfg = _base_of(raw["base"], bases, where)
    try:
        settings = kps_settings(kps) if kps is not None else None
    except ModelError as err:
        raise ModelError(f"{where}: {err}") from err
    if length is not None:
        _require(isinstance(length, int) and not isinstance(length, bool) and length > 0, where,
                 f"text_context_length must be a positive integer, got {length!r}")
    if settings is not None and length is not None:
        _require(length == settings["context_length"], where,
                 f"kps stretches to {settings['context_length']} positions but text_context_length is {length}; "
                 "give kps alone")
    positions = _text_positions(model_cfg["text_cfg"], raw["base"], where)
    if settings is not None:
        _require(positions is None or positions >= settings["source_length"], where,
                 f"kps needs a text tower with at least source_length={settings['source_length']} positions; "
                 f"base {raw['base']!r} has {positions}")
    else:
        _require(positions is None or length <= positions, where,
                 f"text_context_length={length} exceeds the {positions} positions of base {raw['base']!r}")
    model_cfg["text_cfg"]["context_length"] = settings["context_length"] if settings is not None else length
    return Architecture(
        name=path.stem,
        path=path,
        model_cfg=model_cfg,
        preprocess_cfg=copy.deepcopy(base.preprocess_cfg) if base is not None else {},
        packaged_weights=base.packaged_weights if base is not None else (),
        description=raw.get("description", ""),
        sensor_weights=base.sensor_weights if base is not None else {},
        base=raw["base"],
        kps=settings,
        text_context_length=length,
    )


def register_architectures(directory: str | Path | None = None) -> dict[str, Architecture]:
    """Register every config of ``directory`` with open_clip (once per directory).

    A config whose package is missing is left out of open_clip's registry; asking for it later
    raises the reason (see :func:`get_architecture`), so one missing package never hides the rest.

    Args:
        directory: Config folder; defaults to every folder of :func:`models_dirs`.

    Returns:
        The registered architectures by name.

    Raises:
        ModelError: The folder does not exist, or a user config reuses a packaged config's name.
    """
    if directory is None:
        registered: dict[str, Architecture] = {}
        for folder in models_dirs():
            found = _register_folder(folder)
            clash = sorted((set(found) | set(_BROKEN[folder])) & set(registered)) if folder != PACKAGED_DIR else []
            if clash:
                raise ModelError(f"{folder}: {clash} already name packaged architectures; rename the file(s)")
            registered.update(found)
        return registered
    return _register_folder(Path(directory).resolve())


def _register_folder(folder: Path) -> dict[str, Architecture]:
    if folder in _REGISTERED:
        return _REGISTERED[folder]
    if not folder.is_dir():
        raise ModelError(f"architecture config folder {folder} does not exist (check {MODELS_DIR_ENV})")
    registered: dict[str, Architecture] = {}
    broken: dict[str, str] = {}
    _RESOLVED_DIRS.append(tempfile.TemporaryDirectory(prefix="rsvl-open-clip-configs-"))
    resolved_dir = Path(_RESOLVED_DIRS[-1].name)
    paths = sorted(folder.glob("*.json"))
    derived = []
    for path in paths:
        try:
            if "base" in _read_config(path):  # derived configs resolve after every plain one is known
                derived.append(path)
                continue
            architecture = load_architecture(path)
        except ModelError as err:
            broken[path.stem] = str(err)
            continue
        (resolved_dir / path.name).write_text(json.dumps(architecture.model_cfg), encoding="utf-8")
        registered[architecture.name] = architecture
    # a derived config may name a plain config of its own folder or of the packaged one
    bases: dict[str, Architecture | str] = {}
    if folder != PACKAGED_DIR:
        bases.update(_BROKEN.get(PACKAGED_DIR, {}))
        bases.update(_REGISTERED.get(PACKAGED_DIR, {}))
    bases.update(broken)
    bases.update(registered)
    bases.update({path.stem: "it is itself a derived config; name a plain architecture" for path in derived})
    for path in derived:
        try:
            architecture = load_architecture(path, bases)
        except ModelError as err:
            broken[path.stem] = str(err)
            continue
        (resolved_dir / path.name).write_text(json.dumps(architecture.model_cfg), encoding="utf-8")
        registered[architecture.name] = architecture
    open_clip.add_model_config(resolved_dir)  # open_clip keeps configs in memory once scanned
    _REGISTERED[folder] = registered
    _BROKEN[folder] = broken
    return registered


def get_architecture(name: str) -> Architecture | None:
    """Return the rsvl architecture called ``name``, or ``None`` for an open_clip built-in.

    Args:
        name: A config file stem (packaged or under ``$RSVL_MODELS_DIR``) or an open_clip model
            name (``ViT-B-32``).

    Raises:
        ModelError: The name is neither, or its config could not be resolved (the reason is given).
    """
    registered = register_architectures()
    if name in registered:
        return registered[name]
    for folder in models_dirs():
        if name in _BROKEN[folder]:
            raise ModelError(f"architecture {name!r} cannot be used: {_BROKEN[folder][name]}")
    if name in open_clip.list_models():
        return None
    raise ModelError(
        f"unknown architecture {name!r}; rsvl configs in {[str(f) for f in models_dirs()]}: {sorted(registered)}; "
        "open_clip built-ins: see open_clip.list_models()"
    )


def list_architectures() -> list[str]:
    """Names of the rsvl architecture configs that resolved on this machine."""
    return sorted(register_architectures())
