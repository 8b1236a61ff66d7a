"""Image tags and references (rsvl.images): computed from real git checkouts made here."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from rsvl.errors import ConfigError
from rsvl.images import DEFAULT_REGISTRY, GIT_COMMIT_ENV, REGISTRY_ENV, image_name, image_ref, image_tag

REPO = Path(__file__).resolve().parents[1]
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]


def git(root: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture()
def checkout(tmp_path, monkeypatch) -> Path:
    """A one-commit git repository whose pyproject says version 9.8.7."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv(GIT_COMMIT_ENV, raising=False)
    root = tmp_path / "repo"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "rsvl"\nversion = "9.8.7"\n')
    git(root, "init", "-q")
    git(root, "add", "pyproject.toml")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_tag_is_version_and_twelve_digit_sha(checkout):
    sha = git(checkout, "rev-parse", "HEAD")
    assert image_tag(checkout) == f"9.8.7-{sha[:12]}"


def test_modified_checkout_is_marked_dirty(checkout):
    sha = git(checkout, "rev-parse", "HEAD")
    (checkout / "untracked.txt").write_text("untracked files do not count\n")
    assert image_tag(checkout) == f"9.8.7-{sha[:12]}"
    (checkout / "pyproject.toml").write_text('[project]\nname = "rsvl"\nversion = "9.8.8"\n')
    assert image_tag(checkout) == f"9.8.8-{sha[:12]}-dirty"


def test_outside_git_the_commit_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "pyproject.toml").write_text('[project]\nversion = "1.2.3"\n')
    full = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv(GIT_COMMIT_ENV, full)
    assert image_tag(tmp_path) == f"1.2.3-{full[:12]}"

    monkeypatch.setenv(GIT_COMMIT_ENV, "unknown")
    with pytest.raises(ConfigError, match="not a git sha"):
        image_tag(tmp_path)
    monkeypatch.delenv(GIT_COMMIT_ENV)
    with pytest.raises(ConfigError, match="not a git checkout"):
        image_tag(tmp_path)


def test_version_falls_back_to_the_installed_package(tmp_path, monkeypatch):
    from importlib import metadata

    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv(GIT_COMMIT_ENV, "a" * 40)
    assert image_tag(tmp_path) == f"{metadata.version('rsvl')}-{'a' * 12}"


def test_a_version_docker_cannot_tag_is_refused(checkout):
    (checkout / "pyproject.toml").write_text('[project]\nversion = "1.0+local"\n')
    with pytest.raises(ConfigError, match="not a valid Docker tag"):
        image_tag(checkout)


def test_this_checkout_tags_its_own_version_and_head():
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    tag = image_tag()
    assert tag.startswith(f"{version}-{git(REPO, 'rev-parse', 'HEAD')[:12]}")
    assert tag == image_tag(REPO)


def test_reference_uses_registry_argument_then_environment_then_default(checkout, monkeypatch):
    tag = image_tag(checkout)
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    assert image_ref("cpu", repo_root=checkout) == f"{DEFAULT_REGISTRY}/rsvl-cpu:{tag}"
    monkeypatch.setenv(REGISTRY_ENV, "registry.local:5000/team")
    assert image_ref("cuda", repo_root=checkout) == f"registry.local:5000/team/rsvl-cuda:{tag}"
    assert image_ref("cuda", "ghcr.io/other/", repo_root=checkout) == f"ghcr.io/other/rsvl-cuda:{tag}"


@pytest.mark.parametrize("registry", ["https://ghcr.io/rsvl", "GHCR.io/rsvl", "ghcr.io/rsvl:1.0", "", "ghcr.io//rsvl"])
def test_malformed_registries_are_refused(checkout, registry):
    with pytest.raises(ConfigError, match="registry"):
        image_ref("cpu", registry, repo_root=checkout)


def test_unknown_kind_is_refused():
    assert image_name("cpu") == "rsvl-cpu" and image_name("cuda") == "rsvl-cuda"
    with pytest.raises(ConfigError, match="'gpu' is not one of"):
        image_ref("gpu", "ghcr.io/rsvl")
