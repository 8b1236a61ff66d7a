"""Secrets reach the product only from the environment (Kubernetes Secrets on the cluster), never its outputs.

With a fake secret in every credential variable the product reads or passes on, compiling every
paper's pipeline writes it nowhere; the manifests hand credentials to pods only as ``secretKeyRef``;
a tracking URI carrying a password is refused before it can reach params, logs or a compiled pipeline.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from manifest_support import containers_in

from pipelines import known_papers
from pipelines.run import compile_pipeline
from rsvl.config import load_config
from rsvl.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
MARKER = "fake-secret-4f9c2b7e"
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                    "MLFLOW_TRACKING_USERNAME", "PGPASSWORD", "POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD",
                    "OPENAI_API_KEY", "HF_TOKEN")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY|_USER$|USERNAME")


@pytest.fixture()
def fake_secrets(monkeypatch):
    for name in SECRET_VARIABLES:
        monkeypatch.setenv(name, f"{MARKER}-{name}")


def test_compiled_pipelines_hold_no_secret_from_the_environment(fake_secrets, tmp_path):
    written = [compile_pipeline(paper, profile, [], out_dir=tmp_path)
               for paper in known_papers() for profile in ("cluster", "local")]
    assert len(written) == 2 * len(known_papers()) >= 10
    leaks = [path.name for path in written if MARKER in path.read_text()]
    assert leaks == []


def test_a_resolved_config_holds_no_secret_from_the_environment(fake_secrets):
    for paper in known_papers():
        for profile in ("cluster", "local"):
            dump = load_config(REPO / "pipelines" / paper / "config.yaml", profile).model_dump_json()
            assert MARKER not in dump


def test_manifests_give_credentials_to_pods_only_as_secret_refs():
    checked = 0
    for path in sorted((REPO / "k8s").rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "Secret":
                pytest.fail(f"{path}: a Secret with its values is committed; create it in the cluster instead")
            for container in containers_in(document):
                for variable in container.get("env", []):
                    if SECRET_NAME.search(variable["name"]):
                        checked += 1
                        assert "value" not in variable and "secretKeyRef" in variable.get("valueFrom", {}), \
                            f"{path}: {container.get('name')} gets {variable['name']} as a plain value"
    assert checked >= 4  # the database and object-store logins of MLflow, MinIO and the runner


@pytest.mark.parametrize("uri", ["http://alice:hunter2@mlflow:5000", "postgresql://rsvl:pw@db/mlflow"])
def test_a_tracking_uri_with_a_password_is_refused(uri):
    with pytest.raises(ConfigError, match="tracking_uri holds a password"):
        load_config(REPO / "pipelines" / "sar_text" / "config.yaml", "local", [f"mlflow.tracking_uri={uri}"])
    assert load_config(REPO / "pipelines" / "sar_text" / "config.yaml", "local",
                       ["mlflow.tracking_uri=http://mlflow:5000"]).mlflow.tracking_uri == "http://mlflow:5000"
