"""The ``configure`` component's body on the ``sar_text`` pipeline's compiled-in configs (local profile)."""

from __future__ import annotations

import json

import pytest

from components.configure.component import configure
from pipelines.dag import paper_tracks
from rsvl.config import RunConfig, configure_track, tracks_json
from rsvl.errors import ConfigError


@pytest.fixture(scope="module")
def compiled() -> str:
    """The ``config_json`` default the compiled ``sar_text`` pipeline carries: ``{track: config}``."""
    return tracks_json(paper_tracks("sar_text", "local"))


def configured(compiled: str, track: str, epochs: int = 0, lr: float = 0.0, backend: str = "",
               overrides: list | None = None) -> RunConfig:
    returned = configure.python_func(config_json=compiled, track=track, epochs=epochs, lr=lr, backend=backend,
                                     overrides=overrides or [])
    assert isinstance(returned, str)
    return RunConfig.model_validate_json(returned)


def test_no_run_parameters_return_the_compiled_config_of_the_track(compiled):
    for track in ("main", "captioner"):
        cfg = configured(compiled, track)
        assert cfg.track == track
        assert cfg.model_dump(mode="json") == json.loads(compiled)[track]


def test_epochs_and_lr_set_the_main_track_backend_and_overrides_every_track(compiled):
    overrides = ["captioner:train.max_steps=2", "evaluate.batch_size=8"]
    main = configured(compiled, "main", epochs=3, lr=0.002, backend="kuberay", overrides=overrides)
    captioner = configured(compiled, "captioner", epochs=3, lr=0.002, backend="kuberay", overrides=overrides)
    compiled_main, compiled_captioner = (RunConfig.model_validate(json.loads(compiled)[track])
                                         for track in ("main", "captioner"))
    assert (main.train.epochs, main.train.lr, main.train.backend) == (3, 0.002, "kuberay")
    assert main.train.max_steps is None and main.evaluate.batch_size == 8
    assert (captioner.train.epochs, captioner.train.lr) == (compiled_captioner.train.epochs,
                                                            compiled_captioner.train.lr)
    assert (captioner.train.max_steps, captioner.train.backend, captioner.evaluate.batch_size) == (2, "kuberay", 8)
    assert compiled_main.train.epochs != 3 and compiled_captioner.train.max_steps is None
    expected = ["train.backend=kuberay", "main:train.epochs=3", "main:train.lr=0.002", *overrides]
    assert main == configure_track(compiled, "main", expected)
    assert captioner == configure_track(compiled, "captioner", expected)


def test_a_bad_run_parameter_fails_naming_the_field(compiled):
    with pytest.raises(ConfigError, match=r"train\.lr: Input should be greater than 0 \[got -1\.0\]"):
        configured(compiled, "main", lr=-1.0)
    with pytest.raises(ConfigError, match="nosuch"):
        configured(compiled, "main", overrides=["nosuch:train.epochs=1"])
    with pytest.raises(ConfigError, match="remove the vqa section"):
        configured(compiled, "main", overrides=["main:vqa=null"])
    with pytest.raises(ConfigError, match="no track 'nosuch'"):
        configured(compiled, "nosuch")
