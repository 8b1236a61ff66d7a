"""Container image references: ``<registry>/rsvl-<kind>:<version>-<git sha>``.

Compiled pipelines and RayJobs pin the tag computed here, never ``latest``, so every run names
the exact code it ran and an image can be rebuilt from its tag. The version is the project's
(``pyproject.toml`` of the checkout, else the installed package's metadata); the sha is the
first 12 hex digits of the checkout's ``HEAD``, else of ``$RSVL_GIT_COMMIT`` (set in the images,
which hold no ``.git``). A checkout whose tracked files differ from ``HEAD`` gets ``-dirty``
appended: its code is not the commit's, so it must not claim the commit's tag.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

from rsvl.errors import ConfigError

IMAGE_KINDS = ("cpu", "cuda")
REGISTRY_ENV = "RSVL_IMAGE_REGISTRY"
DEFAULT_REGISTRY = "ghcr.io/rsvl"
GIT_COMMIT_ENV = "RSVL_GIT_COMMIT"
SHORT_SHA_LENGTH = 12
DIRTY_SUFFIX = "-dirty"
PACKAGE = "rsvl"

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_SHA = re.compile(r"[0-9a-f]{12,40}")
_REGISTRY = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def image_name(kind: str) -> str:
    """The repository name of an image kind: ``rsvl-cpu`` or ``rsvl-cuda``.

    Args:
        kind: ``cpu`` (pipeline steps) or ``cuda`` (Ray training).

    Raises:
        ConfigError: ``kind`` is not one of :data:`IMAGE_KINDS`.
    """
    if kind not in IMAGE_KINDS:
        raise ConfigError(f"image kind {kind!r} is not one of {IMAGE_KINDS}")
    return f"rsvl-{kind}"


def image_tag(repo_root: str | Path | None = None) -> str:
    """The tag of the images built from a checkout: ``<version>-<12-hex sha>`` (``-dirty`` when modified).

    Args:
        repo_root: The checkout (default: the one holding this package, if any). Outside a git
            checkout the sha comes from ``$RSVL_GIT_COMMIT``.

    Returns:
        A valid Docker tag, e.g. ``0.1.0-5a5b497c1d2e``.

    Raises:
        ConfigError: No commit is known (no checkout and no ``$RSVL_GIT_COMMIT``), the variable is
            not a hex sha, or the version makes an invalid tag.
    """
    root = Path(repo_root) if repo_root is not None else _PACKAGE_ROOT
    tag = f"{_version(root)}-{_commit(root)}"
    if not _TAG.fullmatch(tag):
        raise ConfigError(f"image tag {tag!r} is not a valid Docker tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})")
    return tag


def image_ref(kind: str, registry: str | None = None, *, repo_root: str | Path | None = None) -> str:
    """The full, pinned reference of an image: ``<registry>/rsvl-<kind>:<image_tag()>``.

    Args:
        kind: ``cpu`` or ``cuda``.
        registry: Registry and namespace, e.g. ``ghcr.io/rsvl`` (default: ``$RSVL_IMAGE_REGISTRY``,
            else :data:`DEFAULT_REGISTRY`).
        repo_root: The checkout whose tag to use (see :func:`image_tag`).

    Raises:
        ConfigError: Unknown kind, a malformed registry, or no known commit.
    """
    name = image_name(kind)
    chosen = registry if registry is not None else os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY
    chosen = chosen.strip().rstrip("/")
    if not _REGISTRY.fullmatch(chosen):
        raise ConfigError(
            f"image registry {chosen!r} is not of the form host[:port]/namespace in lower case "
            f"(no scheme, no tag); set it with the registry argument or ${REGISTRY_ENV}"
        )
    return f"{chosen}/{name}:{image_tag(repo_root)}"


def _version(root: Path) -> str:
    """The project version from ``root/pyproject.toml``, else from the installed package."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{pyproject}: not valid TOML ({err})") from err
        if "version" in project:
            return str(project["version"])
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError as err:
        raise ConfigError(f"no version: {pyproject} has no [project].version and {PACKAGE} is not installed") from err


def _commit(root: Path) -> str:
    """The short sha of ``root``'s checkout (``-dirty`` if modified), else of ``$RSVL_GIT_COMMIT``."""
    try:
        sha = _git(root, "rev-parse", f"--short={SHORT_SHA_LENGTH}", "HEAD").strip()
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return _commit_from_env(root)
    return sha + (DIRTY_SUFFIX if dirty else "")


def _commit_from_env(root: Path) -> str:
    """The first 12 digits of ``$RSVL_GIT_COMMIT``; an error when it is unset or not a sha."""
    value = os.environ.get(GIT_COMMIT_ENV, "").strip().lower()
    if not value:
        raise ConfigError(
            f"no commit for the image tag: {root} is not a git checkout and ${GIT_COMMIT_ENV} is unset"
        )
    if not _SHA.fullmatch(value):
        raise ConfigError(f"${GIT_COMMIT_ENV}={value!r} is not a git sha (12 to 40 hex digits)")
    return value[:SHORT_SHA_LENGTH]


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                          timeout=10).stdout
