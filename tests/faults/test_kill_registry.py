"""kill -9 during register and promote: the registry never holds a half-made version or a wrong champion.

A real subprocess registers (or promotes) against a real sqlite MLflow store and is SIGKILLed at a
named point (:mod:`rsvl.fault_points`); the store is then read as a consumer reads it, and the
re-run, as a pipeline re-run would make it, completes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

from rsvl.fault_points import KILL_AT_ENV
from rsvl.model_registry import Lineage, get_champion, register_model, set_champion
from rsvl.model_registry.register import CANDIDATE, IDENTITY_TAG, registry_client
from rsvl.models import build_model, save_model

NAME = "rsvl-kill-test"
LINEAGE = {"git_commit": "0" * 40, "train_data_md5": "a" * 32, "eval_data_md5": "b" * 32, "pipeline_run_id": "run-1",
           "config_hash": "c" * 16, "paper": "georsclip"}
REGISTER = ("import sys\nfrom rsvl.model_registry import Lineage, register_model\n"
            f"register_model(sys.argv[1], {NAME!r}, Lineage(**{LINEAGE!r}), sys.argv[2])\n")
PROMOTE = ("import sys\nfrom rsvl.model_registry import set_champion\nfrom rsvl.model_registry.register import "
           f"registry_client\nset_champion(registry_client(sys.argv[2]), {NAME!r}, int(sys.argv[1]))\n")


def _tiny(folder, seed):
    torch.manual_seed(seed)
    return save_model(build_model("rsvl-tiny", pretrained=None)[0], folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill-models")
    return _tiny(root / "champion", 0), _tiny(root / "challenger", 1)


def _killed(script: str, argument: str, uri: str, point: str) -> None:
    env = {**os.environ, KILL_AT_ENV: point, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script, argument, uri], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def _versions(uri: str) -> list:
    return sorted(registry_client(uri).search_model_versions(f"name='{NAME}'"), key=lambda v: int(v.version))


@pytest.mark.parametrize("point", ["register.after_log_model", "register.after_create_version"])
def test_a_register_killed_midway_leaves_whole_versions_and_the_rerun_completes(tmp_path, models, point):
    champion_dir, challenger_dir = models
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = register_model(champion_dir, NAME, Lineage(**LINEAGE), uri)
    set_champion(registry_client(uri), NAME, first.version)

    _killed(REGISTER, str(challenger_dir), uri, point)
    versions = _versions(uri)
    assert all(IDENTITY_TAG in v.tags for v in versions)  # every version a consumer can see is whole
    assert len(versions) == (2 if point == "register.after_create_version" else 1)
    assert get_champion(NAME, registry_client(uri)) == first.version  # the champion never moved

    again = register_model(challenger_dir, NAME, Lineage(**LINEAGE), uri)
    assert again.created == (point == "register.after_log_model")  # a whole version is reused, not doubled
    assert [int(v.version) for v in _versions(uri)] == [1, 2] and again.version == 2
    assert CANDIDATE in again.aliases and get_champion(NAME, registry_client(uri)) == first.version


def test_a_promotion_killed_before_its_alias_moves_leaves_the_old_champion_and_the_rerun_moves_it(tmp_path, models):
    champion_dir, challenger_dir = models
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = register_model(champion_dir, NAME, Lineage(**LINEAGE), uri)
    set_champion(registry_client(uri), NAME, first.version)
    second = register_model(challenger_dir, NAME, Lineage(**LINEAGE), uri)

    _killed(PROMOTE, str(second.version), uri, "promote.before_alias")
    assert get_champion(NAME, registry_client(uri)) == first.version
    set_champion(registry_client(uri), NAME, second.version)
    assert get_champion(NAME, registry_client(uri)) == second.version
