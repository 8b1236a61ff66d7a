"""Load a run's configuration: YAML layers merged with OmegaConf, validated by the strict section models.

A paper's ``pipelines/<paper>/config.yaml`` extends ``pipelines/base.yaml``; the base, the paper
file, a track and ``--set`` overrides are merged in that order, each with ``defaults`` then
``profiles.<profile>``. The layer order, the sections an overlay replaces
(:data:`~rsvl.config.run.OVERLAY_REPLACES`) and validation are described in
``docs/configuration.md``. :func:`explain` lists where every resolved value came from.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from rsvl.config.run import MAIN_TRACK, PROFILES, SHARED_KEYS, OVERLAY_REPLACES, RunConfig
from rsvl.config.train import NAME
from rsvl.errors import ConfigError

DEFAULT_SOURCE = "default"
"""The source :func:`explain` gives a value no layer set (the section model's default)."""
OVERRIDE_SOURCE = "override"


class _ConfigLoader(yaml.SafeLoader):
    """YAML 1.1 loader that also reads ``1e-3`` as a float (plain PyYAML reads it as text)."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    # YAML 1.1 floats need a dot, so without this resolver `lr: 1e-3` would load as the string "1e-3"
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


MAX_YAML_NODES = 100_000
"""The most nodes a config may hold once its aliases are expanded (a real config holds a few hundred)."""


def _construct_mapping(loader: _ConfigLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """Build a mapping, refusing a key written twice (PyYAML would silently keep the last)."""
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *base` keys are merged, and explicit keys may override them
        key = loader.construct_object(key_node, deep=True)
        try:
            earlier = seen.setdefault(key, key_node)
        except TypeError:
            continue  # an unhashable key: the constructor below says so
        if earlier is not key_node:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r} (first on line {earlier.start_mark.line + 1}): "
                "a key may appear once in a mapping", key_node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_ConfigLoader.construct_mapping = _construct_mapping  # SafeLoader's map constructor calls it for every mapping


def _expanded_size(node: yaml.Node, limit: int) -> int:
    """Count the nodes of ``node`` with every alias expanded, stopping past ``limit``.

    Aliases make the composed graph share nodes, so a few hundred bytes can stand for billions
    of nodes (a "billion laughs" file); counting per distinct node with memoisation stays cheap.

    Raises:
        yaml.YAMLError: An alias refers to a node that contains it.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(current: yaml.Node, depth: int) -> int:
        if id(current) in sizes:
            return sizes[id(current)]
        if id(current) in open_nodes:
            raise yaml.YAMLError(f"the node at line {current.start_mark.line + 1} holds an alias to itself "
                                 "(a recursive alias expands forever)")
        if depth > 100:
            return limit + 1  # absurd nesting
        open_nodes.add(id(current))
        total = 1
        if isinstance(current, yaml.SequenceNode):
            children = current.value
        elif isinstance(current, yaml.MappingNode):
            children = [child for pair in current.value for child in pair]
        else:
            children = []
        for child in children:
            total += size(child, depth + 1)
            if total > limit:
                break
        open_nodes.discard(id(current))
        sizes[id(current)] = total
        return total

    return size(node, 0)


def _load_yaml(text: str):
    """Parse config YAML: duplicate keys and alias expansion past :data:`MAX_YAML_NODES` are refused.

    Raises:
        yaml.YAMLError: The text is not YAML, repeats a key, or expands into too many nodes.
    """
    loader = _ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise yaml.YAMLError(f"aliases expand it to more than {MAX_YAML_NODES} nodes (an alias bomb?): "
                                 "anchors and aliases may only repeat small pieces")
        return loader.construct_document(node)
    finally:
        loader.dispose()


@dataclass(frozen=True)
class Layer:
    """One partial config in the merge order.

    Attributes:
        source: Where it comes from (``pipelines/base.yaml profiles.local``, ``override``).
        values: The partial config.
        replaces: Sections removed before this layer merges (a track's own ``gate``/``model``).
    """

    source: str
    values: dict[str, Any]
    replaces: tuple[str, ...] = ()


Provenance = dict[tuple[str, ...], str]


def _merge_one(merged: dict[str, Any], layer: Layer) -> dict[str, Any]:
    try:
        combined = OmegaConf.merge(OmegaConf.create(merged), OmegaConf.create(layer.values))
        return OmegaConf.to_container(combined, resolve=False)  # interpolation-looking text stays text
    except OmegaConfBaseException as err:
        raise ConfigError(f"{layer.source}: cannot merge {_clash(merged, layer.values) or '(top level)'}: "
                          f"{str(err).splitlines()[0]}") from err


def _clash(below: Any, above: Any, prefix: tuple[str, ...] = ()) -> str | None:
    """The first dotted key where a mapping meets a list (OmegaConf's error does not say which)."""
    if isinstance(below, dict) and isinstance(above, dict):
        for key in above:
            found = _clash(below.get(key), above[key], (*prefix, str(key)))
            if found:
                return found
        return None
    if {type(below), type(above)} == {dict, list}:
        return ".".join(prefix)
    return None


def _record(provenance: Provenance, values: dict[str, Any], source: str, prefix: tuple[str, ...] = ()) -> None:
    """Mark every key ``values`` sets as coming from ``source``; a replaced value drops what it replaced."""
    for key, value in values.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value:
            provenance.pop(path, None)  # a mapping merges: its keys keep their own sources
            _record(provenance, value, source, path)
        else:
            _forget(provenance, path)
            provenance[path] = source


def _forget(provenance: Provenance, path: tuple[str, ...]) -> None:
    for known in [known for known in provenance if known[:len(path)] == path]:
        del provenance[known]


def merge_layers(layers: list[Layer]) -> tuple[dict[str, Any], Provenance]:
    """Merge ``layers`` in order (mappings merge, lists and values replace) and record who set what.

    Args:
        layers: Lowest priority first.

    Returns:
        The merged mapping and, per dotted key path a layer set, that layer's ``source``.

    Raises:
        ConfigError: A layer cannot merge (a mapping over a list), naming the layer and key.
    """
    merged: dict[str, Any] = {}
    provenance: Provenance = {}
    for layer in layers:
        for section in layer.replaces:
            # an overlay that sets gate or names model.name replaces the section whole, so drop it before merging
            merged.pop(section, None)
            _forget(provenance, (section,))
        merged = _merge_one(merged, layer)
        _record(provenance, layer.values, layer.source)
    return merged, provenance


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``; nested mappings merge, other values replace.

    Args:
        base: Lower-priority mapping.
        override: Higher-priority mapping.

    Returns:
        A new merged dict; neither input is modified.
    """
    # reuse merge_layers so every merge follows the same OmegaConf rules (lists replace, mappings merge)
    return merge_layers([Layer("base", base), Layer("override", override)])[0]


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ``["train.epochs=3", "data.seed=7"]`` into a nested dict (OmegaConf's dotlist; values are YAML).

    Args:
        items: ``dotted.key=value`` strings.

    Returns:
        A nested override mapping.

    Raises:
        ConfigError: An item is not ``dotted.key=value`` or its value is not YAML.
    """
    # checked first so the error names the bad item, not OmegaConf's generic dotlist message
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(items)), resolve=False)
    except (OmegaConfBaseException, yaml.YAMLError) as err:
        raise ConfigError(f"overrides {list(items)}: {str(err).splitlines()[0]}") from err


def _source_of(provenance: Provenance, path: tuple[str, ...]) -> str:
    """The layer that set ``path`` or the mapping or list holding it; :data:`DEFAULT_SOURCE` if none did."""
    for end in range(len(path), 0, -1):
        if path[:end] in provenance:
            return provenance[path[:end]]
    return DEFAULT_SOURCE


def _format_errors(err: ValidationError, where: str, provenance: Provenance | None = None) -> str:
    lines = [f"{where}: {err.error_count()} invalid field(s)"]
    for detail in err.errors():
        loc = tuple(str(p) for p in detail["loc"])
        path = ".".join(loc) or "(top level)"
        got = detail.get("input")
        shown = "" if isinstance(got, dict) else f" [got {got!r}]"
        origin = ""
        if provenance is not None and loc and _source_of(provenance, loc) != DEFAULT_SOURCE:
            origin = f" (set by {_source_of(provenance, loc)})"
        lines.append(f"  {path}: {detail['msg']}{shown}{origin}")
    return "\n".join(lines)


# a sentinel, since a key set to null (None) still counts as set
_MISSING = object()


def _shared_keys(layer: dict[str, Any]) -> list[str]:
    """The :data:`SHARED_KEYS` a partial config sets (a section, or a key inside ``train``)."""
    found = []
    for key in SHARED_KEYS:
        node: Any = layer
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) and part in node else _MISSING
        if node is not _MISSING:
            found.append(key)
    return found


def track_overrides(items: list[str] | tuple[str, ...], track: str, tracks: list[str] | tuple[str, ...]) -> list[str]:
    """The overrides that apply to ``track``: plain ``key=value`` ones and ``<track>:key=value`` ones.

    Args:
        items: Overrides as given (``train.lr=1e-4``, ``captioner:train.epochs=3``).
        track: The track being configured.
        tracks: The paper's track names; a prefix naming none of them is refused (catches typos).

    Returns:
        The overrides for ``track``, prefixes removed.

    Raises:
        ConfigError: A prefix names no track, or a prefixed override touches a :data:`SHARED_KEYS` key.
    """
    chosen = []
    for item in items:
        key, sep, value = item.partition("=")
        if ":" not in key:
            chosen.append(item)
            continue
        prefix, _, dotted = key.partition(":")
        if prefix not in tracks:
            raise ConfigError(f"override {item!r} names track {prefix!r}; the paper's tracks are {list(tracks)}")
        # parse the value as YAML so `train={dataset: x}` is caught as well as `train.dataset=x`
        if _shared_keys(parse_overrides([f"{dotted}{sep}{value}"])):
            raise ConfigError(f"override {item!r}: {', '.join(SHARED_KEYS)} are shared by every track; "
                              "override them without a track prefix")
        if prefix == track:
            chosen.append(f"{dotted}{sep}{value}")
    return chosen


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    try:
        raw = _load_yaml(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return raw


PAPER_KEYS = ("paper", "extends", "defaults", "profiles", "tracks")
BASE_KEYS = ("defaults", "profiles")


@dataclass(frozen=True)
class _Document:
    """A config file as read: its own layers, its tracks and the base file it extends (if any)."""

    path: Path
    paper: Any
    defaults: dict[str, Any]
    profiles: dict[str, dict[str, Any]]
    tracks: dict[str, dict[str, Any]]
    base: "_Document | None"


def _profiles(path: Path, section: Any) -> dict[str, dict[str, Any]]:
    profiles = _mapping(section, f"{path}: profiles")
    unknown = [profile for profile in profiles if profile not in PROFILES]
    if unknown:
        raise ConfigError(f"{path}: profiles: unknown profiles {unknown}; allowed: {list(PROFILES)}")
    return {profile: _mapping(layer, f"{path}: profiles.{profile}") for profile, layer in profiles.items()}


def _read_document(path: Path) -> _Document:
    """Read a paper config and the base file its ``extends`` names (relative to the paper file)."""
    raw = _read_yaml(path)
    unknown = set(raw) - set(PAPER_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}; allowed: {', '.join(PAPER_KEYS)}")
    base = None
    if raw.get("extends") is not None:
        if not isinstance(raw["extends"], str):
            raise ConfigError(f"{path}: extends must be a path to the base config, got {raw['extends']!r}")
        # normpath so layer sources read pipelines/base.yaml, not pipelines/<paper>/../base.yaml
        base_path = Path(os.path.normpath(path.parent / raw["extends"]))
        base_raw = _read_yaml(base_path)
        unknown = set(base_raw) - set(BASE_KEYS)
        if unknown:
            raise ConfigError(f"{base_path}: a base config holds only {', '.join(BASE_KEYS)}; got {sorted(unknown)}")
        base = _Document(base_path, None, _mapping(base_raw.get("defaults"), f"{base_path}: defaults"),
                         _profiles(base_path, base_raw.get("profiles")), {}, None)
    return _Document(path, raw.get("paper"), _mapping(raw.get("defaults"), f"{path}: defaults"),
                     _profiles(path, raw.get("profiles")), _read_tracks(path, raw.get("tracks")), base)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """``value`` as a mapping (``None``: empty); anything else is refused naming ``where``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(value).__name__} {value!r}")
    return value


def _read_tracks(path: Path, section: Any) -> dict[str, dict[str, Any]]:
    """Check the ``tracks`` section: ``{track: {defaults, profiles: {local, cluster}}}``, all mappings.

    Returns:
        Track name → ``{"defaults": layer, "profiles": {profile: layer}}``, in file order.

    Raises:
        ConfigError: A value is not a mapping, a track name is ``main`` or invalid, an entry has
            other keys, a profile is unknown, or a layer sets a :data:`SHARED_KEYS` key.
    """
    tracks = {}
    for name, entry in _mapping(section, f"{path}: tracks").items():
        where = f"{path}: tracks.{name}"
        if name == MAIN_TRACK:
            raise ConfigError(f"{where}: {MAIN_TRACK!r} is the paper's own sections; name the track otherwise")
        if not isinstance(name, str) or not re.fullmatch(NAME, name):
            raise ConfigError(f"{where}: a track name is 1-64 letters, digits, '_' or '-'")
        entry = _mapping(entry, where)
        if set(entry) - {"defaults", "profiles"}:
            raise ConfigError(f"{where}: a track holds only 'defaults' and 'profiles', got {sorted(entry)}")
        profiles = _mapping(entry.get("profiles"), f"{where}.profiles")
        unknown = [profile for profile in profiles if profile not in PROFILES]
        if unknown:
            raise ConfigError(f"{where}.profiles: unknown profiles {unknown}; allowed: {list(PROFILES)}")
        layers = {"defaults": _mapping(entry.get("defaults"), f"{where}.defaults")}
        layers.update({f"profiles.{profile}": _mapping(layer, f"{where}.profiles.{profile}")
                       for profile, layer in profiles.items()})
        for key, layer in layers.items():
            shared = _shared_keys(layer)
            if shared:
                raise ConfigError(f"{where}.{key}: sets {shared}, which every track shares (the pipeline trains "
                                  "every track on the same filtered data); set them in the paper's sections")
        tracks[name] = {"defaults": layers["defaults"],
                        "profiles": {profile: layers[f"profiles.{profile}"] for profile in profiles}}
    return tracks


def _replaced_sections(own: dict[str, Any]) -> tuple[str, ...]:
    """The sections an overlay's own merged layers replace in what lies below (:data:`OVERLAY_REPLACES`)."""
    replaced = []
    for section, key in OVERLAY_REPLACES.items():
        value = own.get(section, _MISSING)
        if value is not _MISSING and (key is None or (isinstance(value, dict) and key in value)):
            replaced.append(section)
    return tuple(replaced)


def _layers(document: _Document, profile: str, track: str, overrides: list[str] | tuple[str, ...]) -> list[Layer]:
    """Every layer of ``track`` under ``profile``, lowest priority first (see the module docstring)."""
    path = document.path
    if profile not in PROFILES:
        raise ConfigError(f"{path}: profile {profile!r} is not one of {PROFILES}")
    files = [doc for doc in (document.base, document) if doc is not None]
    if not any(profile in doc.profiles for doc in files):
        defined = sorted({name for doc in files for name in doc.profiles})
        raise ConfigError(f"{path}: no profile {profile!r}; the file defines {defined}")
    names = [MAIN_TRACK, *document.tracks]
    if track not in names:
        raise ConfigError(f"{path}: no track {track!r}; the file defines {names}")
    overlays = [(f"{doc.path} ", doc.defaults, doc.profiles.get(profile, {})) for doc in files]
    if track != MAIN_TRACK:
        entry = document.tracks[track]
        # the base file (index 0) replaces nothing: nothing lies below it
        overlays.append((f"{path} tracks.{track}.", entry["defaults"], entry["profiles"].get(profile, {})))
    layers = []
    for index, (source, defaults, own_profile) in enumerate(overlays):
        replaces = _replaced_sections(deep_merge(defaults, own_profile)) if index else ()
        layers.append(Layer(f"{source}defaults", defaults, replaces))
        layers.append(Layer(f"{source}profiles.{profile}", own_profile))
    layers.append(Layer(OVERRIDE_SOURCE, parse_overrides(track_overrides(overrides, track, names))))
    return layers


def track_names(path: str | Path) -> list[str]:
    """The tracks a paper config defines: ``main`` (the paper's own sections) then ``tracks`` in file order."""
    return [MAIN_TRACK, *_read_document(Path(path)).tracks]


def _resolve(path: str | Path, profile: str, overrides: list[str] | tuple[str, ...],
             track: str) -> tuple[RunConfig, Provenance]:
    path = Path(path)
    document = _read_document(path)
    merged, provenance = merge_layers(_layers(document, profile, track, overrides))
    # identity fields come from the file and the arguments, whatever a layer sets
    merged.update(paper=document.paper, profile=profile, track=track)
    try:
        return RunConfig.model_validate(merged), provenance
    except ValidationError as err:
        where = f"{path} (profile {profile}{'' if track == MAIN_TRACK else f', track {track}'})"
        raise ConfigError(_format_errors(err, where, provenance)) from err


def load_config(
    path: str | Path,
    profile: str = "local",
    overrides: list[str] | tuple[str, ...] = (),
    track: str = MAIN_TRACK,
) -> RunConfig:
    """Load, merge and validate a paper config (layer order: ``docs/configuration.md``).

    Args:
        path: ``pipelines/<paper>/config.yaml``.
        profile: ``local`` or ``cluster``.
        overrides: Dotted ``key=value`` overrides applied last (``<track>:key=value`` for one track).
        track: ``main`` or a name under ``tracks``.

    Returns:
        The validated, frozen :class:`RunConfig`.

    Raises:
        ConfigError: A file is missing or not YAML, the profile or track is unknown, the ``tracks``
            section is malformed, or a field breaks a rule (naming file, profile, field and layer).
    """
    return _resolve(path, profile, overrides, track)[0]


def explain(
    path: str | Path,
    profile: str = "local",
    overrides: list[str] | tuple[str, ...] = (),
    track: str = MAIN_TRACK,
) -> list[tuple[str, Any, str]]:
    """Every resolved value with the layer it came from (``rsvl config check --explain``).

    Args:
        path: ``pipelines/<paper>/config.yaml``.
        profile: ``local`` or ``cluster``.
        overrides: As for :func:`load_config`.
        track: ``main`` or a name under ``tracks``.

    Returns:
        ``(dotted key, value, source)`` per leaf in field order (a list is one leaf); ``source`` is a
        :attr:`Layer.source`, ``"default"`` or ``"argument"`` (profile and track).

    Raises:
        ConfigError: As :func:`load_config`.
    """
    cfg, provenance = _resolve(path, profile, overrides, track)
    identity = {"paper": f"{path} paper", "profile": "argument", "track": "argument"}
    rows: list[tuple[str, Any, str]] = []

    def walk(node: Any, prefix: tuple[str, ...]) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, (*prefix, key))
            return
        source = identity.get(prefix[0]) if len(prefix) == 1 and prefix[0] in identity else \
            _source_of(provenance, prefix)
        rows.append((".".join(prefix), node, source))

    walk(cfg.model_dump(mode="json"), ())
    return rows


def format_explain(rows: list[tuple[str, Any, str]]) -> str:
    """:func:`explain` rows as aligned text lines ``key = value    <- source``."""
    shown = [(key, json.dumps(value, separators=(", ", ": ")), source) for key, value, source in rows]
    # overlong lines are left out of the width so one long list does not push every arrow right
    width = max((len(f"{key} = {value}") for key, value, _ in shown if len(f"{key} = {value}") <= 70), default=0)
    return "\n".join(f"{f'{key} = {value}':<{width}}  <- {source}" for key, value, source in shown)


def load_tracks(
    path: str | Path, profile: str = "local", overrides: list[str] | tuple[str, ...] = ()
) -> dict[str, RunConfig]:
    """Every track of a paper config, resolved (``main`` first); see :func:`load_config`.

    Raises:
        ConfigError: As :func:`load_config`, or two tracks register under the same
            ``registry.model_name`` (they would share one registry entry and its aliases).
    """
    tracks = {track: load_config(path, profile, overrides, track) for track in track_names(path)}
    owners: dict[str, str] = {}
    for track, cfg in tracks.items():
        name = cfg.registry.model_name
        if name in owners:
            raise ConfigError(f"{path} (profile {profile}): tracks {owners[name]!r} and {track!r} both register as "
                              f"registry.model_name {name!r}; give each track its own (they would share one "
                              "registry entry, its champion and candidate)")
        owners[name] = track
    return tracks


def apply_overrides(cfg: RunConfig, overrides: list[str] | tuple[str, ...],
                    tracks: list[str] | tuple[str, ...]) -> RunConfig:
    """Apply ``dotted.key=value`` overrides to a resolved config (a pipeline run's UI parameters).

    Args:
        cfg: The resolved config.
        overrides: As for :func:`load_config`; ``<track>:`` ones apply to that track only.
        tracks: The paper's track names; a prefix naming none of them is refused.

    Returns:
        A new validated config.

    Raises:
        ConfigError: An override is malformed, names an unknown track or breaks a rule.
    """
    chosen = track_overrides(overrides, cfg.track, tracks)
    merged = deep_merge(cfg.model_dump(mode="json"), parse_overrides(chosen))
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, f"{cfg.paper} config (profile {cfg.profile}, track {cfg.track}) "
                                              f"with {list(overrides)}")) from err


def tracks_json(tracks: dict[str, RunConfig]) -> str:
    """The resolved configs of a paper's tracks as one JSON object ``{track: config}`` (a pipeline parameter)."""
    return json.dumps({name: cfg.model_dump(mode="json") for name, cfg in tracks.items()}, sort_keys=False)


def configure_track(config_json: str, track: str, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Pick ``track`` out of :func:`tracks_json` output and apply run-time overrides to it.

    Args:
        config_json: ``{track: config}`` as :func:`tracks_json` writes it.
        track: The track to resolve.
        overrides: As for :func:`apply_overrides`.

    Returns:
        The track's validated config.

    Raises:
        ConfigError: Bad JSON, no such track, an override breaks a rule, or it adds or removes the
            ``vqa`` section (the compiled DAG's steps cannot change at run time).
    """
    try:
        tracks = json.loads(config_json)
    except json.JSONDecodeError as err:
        raise ConfigError(f"config_json is not JSON ({err})") from err
    if not isinstance(tracks, dict) or track not in tracks:
        known = list(tracks) if isinstance(tracks, dict) else "none"
        raise ConfigError(f"config_json has no track {track!r} (tracks: {known})")
    try:
        cfg = RunConfig.model_validate_json(json.dumps(tracks[track]))
    except ValidationError as err:
        raise ConfigError(_format_errors(err, f"config_json track {track!r}")) from err
    resolved = apply_overrides(cfg, overrides, list(tracks))
    if (resolved.vqa is None) != (cfg.vqa is None):
        raise ConfigError(f"track {track!r}: overrides {list(overrides)} {'remove' if cfg.vqa else 'add'} the vqa "
                          "section, but the pipeline's steps were fixed when it was compiled; recompile with "
                          "the change (python -m pipelines.run --set ...) instead")
    return resolved


def write_config_file(cfg: RunConfig, path: str | Path) -> Path:
    """Write a resolved config as a ``config.yaml``-style file that loads back to ``cfg``.

    Everything goes under ``defaults``, with an empty ``cfg.profile`` (and track) entry, so
    ``load_config(path, cfg.profile, track=cfg.track)`` returns an equal config (a RayJob reads it).

    Args:
        cfg: The resolved config.
        path: Destination (parent folders are created).

    Returns:
        The path.
    """
    payload = cfg.model_dump(mode="json")
    track = payload.pop("track")
    # an (empty) profile entry is needed: loading refuses a profile no file defines
    document = {"paper": payload.pop("paper"), "defaults": payload, "profiles": {payload.pop("profile"): {}}}
    if track != MAIN_TRACK:
        document["tracks"] = {track: {}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path
