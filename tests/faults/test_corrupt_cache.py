"""A corrupted KFP local cache entry or eval cache entry is detected by its digest and rebuilt, never used."""

# no `from __future__ import annotations`: KFP reads the components' annotations as types
import json
import logging
from pathlib import Path

import pytest
from kfp import dsl, local

from rsvl import kfp_cache


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def write_scene(text: str, scene: dsl.Output[dsl.Dataset]):
    from pathlib import Path

    Path(scene.path).mkdir(parents=True)
    (Path(scene.path) / "caption.txt").write_text(text)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def read_scene(scene: dsl.Input[dsl.Dataset], mark: str) -> str:
    from pathlib import Path

    return (Path(scene.path) / "caption.txt").read_text() + mark


@dsl.pipeline
def two_steps(text: str, mark: str) -> str:
    written = write_scene(text=text)
    return read_scene(scene=written.outputs["scene"], mark=mark).output


def _entry(root: Path, output: str) -> Path:
    """The one cache entry whose outputs hold ``output`` (the scene's URI, or the reader's answer)."""
    [path] = [p for p in (root / ".kfp_cache").glob("*.json")
              if not p.name.endswith(kfp_cache.DIGEST_SUFFIX) and output in p.read_text()]
    return path


@pytest.fixture
def runner(tmp_path, monkeypatch):
    """The local runner with the verified cache; KFP's own class again afterwards."""
    monkeypatch.setattr(local.cache, "LocalCache", local.cache.LocalCache)  # restored at teardown
    kfp_cache.install()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), enable_caching=True)
    yield tmp_path
    local.cache.reset_local_cache_singleton()


def test_a_changed_artifact_or_edited_entry_is_rebuilt_not_used(runner, caplog):
    assert type(local.cache.get_local_cache()) is kfp_cache.VerifiedLocalCache  # kfp builds ours
    assert two_steps(text="a river", mark="!").output == "a river!"
    scene = Path(json.loads(_entry(runner, '"scene"').read_text())["scene"]["uri"]) / "caption.txt"
    assert scene.read_text() == "a river"

    # unchanged: both steps are cache hits (nothing new is written)
    before = sorted(p.name for p in runner.rglob("*"))
    assert two_steps(text="a river", mark="!").output == "a river!"
    assert sorted(p.name for p in runner.rglob("*")) == before

    # the cached scene changes on disk; a new reader (new mark) gets a rebuilt scene, not the changed one
    scene.write_text("a river, tampered")
    with caplog.at_level(logging.WARNING, logger="rsvl.kfp_cache"):
        assert two_steps(text="a river", mark="?").output == "a river?"
    assert f"artifact {scene.parent} changed since the step wrote it" in caplog.text

    # the reader's entry is edited to another answer (valid JSON): detected, the step runs again
    read_entry = _entry(runner, "a river?")
    edited = json.loads(read_entry.read_text())
    edited["Output"] = "forged"
    read_entry.write_text(json.dumps(edited))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rsvl.kfp_cache"):
        assert two_steps(text="a river", mark="?").output == "a river?"
    assert "its JSON changed since the step wrote it" in caplog.text

    # a truncated entry without its digest record (cut off, or written by plain KFP): a miss, rebuilt
    read_entry = _entry(runner, "a river?")
    read_entry.write_text(read_entry.read_text()[:10])
    Path(str(read_entry)[:-len(".json")] + kfp_cache.DIGEST_SUFFIX).unlink()
    assert two_steps(text="a river", mark="?").output == "a river?"
    assert json.loads(_entry(runner, "a river?").read_text()) == {"Output": "a river?"}
