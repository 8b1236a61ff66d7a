"""The `rsvl` command line: documented commands work and errors are one clear line, exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from rsvl.cli import app
from rsvl.data.store import read_manifest

runner = CliRunner()
RSVL = Path(sys.executable).parent / "rsvl"


def test_config_check_prints_resolved_json(repo_root):
    result = runner.invoke(app, ["config", "check", str(repo_root / "pipelines/sar_text/config.yaml"),
                                 "--profile", "cluster", "--set", "train.epochs=3"])
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["profile"] == "cluster" and resolved["train"]["epochs"] == 3


def test_config_check_explain_prints_every_value_with_its_layer(repo_root):
    paper = repo_root / "pipelines/sar_text/config.yaml"
    result = runner.invoke(app, ["config", "check", str(paper), "--profile", "cluster", "--explain",
                                 "--set", "train.seed=3"])
    assert result.exit_code == 0, result.output
    lines = {line.split(" = ")[0]: line for line in result.output.splitlines()}
    base = repo_root / "pipelines/base.yaml"
    assert lines["model.name"].endswith(f'<- {paper} profiles.cluster') and '"ViT-L-14"' in lines["model.name"]
    assert lines["train.num_workers"].endswith(f"<- {base} profiles.cluster") and "= 4 " in lines["train.num_workers"]
    assert lines["train.seed"].endswith("<- override")
    assert lines["train.amp"].endswith("<- default")


def test_config_error_exits_1_naming_field(repo_root):
    result = runner.invoke(app, ["config", "check", str(repo_root / "pipelines/sar_text/config.yaml"),
                                 "--set", "train.batch_size=0"])
    assert result.exit_code == 1
    assert "train.batch_size: Input should be greater than 0" in result.output


def test_ingest_reports_quarantine_and_tracks_with_dvc(tmp_path, monkeypatch):
    project = tmp_path / "project"
    source = tmp_path / "scenes"
    (source / "Forest").mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (4, 4), (0, 90 + i, 0)).save(source / "Forest" / f"{i}.png")
    (source / "labels.csv").write_text("filepath,label,split\nForest/0.png,forest,train\n"
                                       "Forest/1.png,forest,test\nForest/9.png,forest,val\n")
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
    result = subprocess.run([str(RSVL), "data", "ingest", "--format", "class-folder", "--source", str(source),
                             "--out", "data/forest", "--track"], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "2 rows, 2 media files" in result.stdout
    assert "1 rows quarantined (file_exists: 1)" in result.stdout
    assert (project / "data.dvc").is_file() and "tracked data/ with DVC" in result.stdout
    monkeypatch.chdir(project)
    version = runner.invoke(app, ["data", "version", "data/forest"])
    assert version.output.strip().endswith(":forest")
    assert len(read_manifest(project / "data/forest")) == 2


def test_unknown_format_lists_known_ones(tmp_path):
    result = runner.invoke(app, ["data", "ingest", "--format", "nope", "--source", str(tmp_path),
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "unknown format 'nope'" in result.output and "class-folder" in result.output


def test_console_script_is_installed():
    formats = subprocess.run([str(RSVL), "data", "formats"], capture_output=True, text=True)
    assert formats.returncode == 0, formats.stderr
    assert "class-folder" in formats.stdout.split()


def test_models_list_names_the_packaged_architectures(repo_root):
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    committed = {p.stem for p in (repo_root / "src/rsvl/models/configs").glob("*.json")}
    assert committed == {"rsvl-effnetlite0-coca", "rsvl-effnetlite0-minilm", "rsvl-effnetlite0-minilm-cls",
                         "rsvl-effnetlite0-minilm-kps248", "rsvl-effnetlite0-minilm-77",
                         "rsvl-resnet50-ssl4eo-minilm", "rsvl-tiny", "rsvl-tiny-coca", "ViT-B-32-kps248",
                         "ViT-L-14-kps248"}
    assert set(result.output.split()) == committed


def test_train_names_the_plan_with_steps_and_time_over_all_its_fits(tmp_path):
    from rsvl.cli import _plan_line
    from rsvl.train.fit import FitResult

    def fit(name: str, steps: int, seconds: float, **parts) -> FitResult:
        return FitResult(run_name=name, mlflow_run_id="x", model_dir=tmp_path / name, steps=steps, seconds=seconds,
                         **parts)

    optical, sar = fit("my-run-optical", 6, 10.0), fit("my-run-sar", 3, 5.0)
    control = fit("my-run-sar_only-sar", 9, 12.0)
    plan = fit("my-run-sar", 3, 5.0, stages={"optical": optical, "sar": sar},
               ablations={"sar_only": fit("my-run-sar_only-sar", 9, 12.0, stages={"sar": control})})
    assert _plan_line("my-run", plan) == f"run my-run: 18 steps in 27 s over 3 fits; model in {tmp_path / 'my-run-sar'}"
    assert _plan_line("plain", fit("plain", 16, 25.0)) == f"run plain: 16 steps in 25 s; model in {tmp_path / 'plain'}"


def test_evaluate_refuses_a_comparison_name_given_twice(repo_root, tmp_path):
    result = runner.invoke(app, ["evaluate", "--config", str(repo_root / "pipelines/sar_text/config.yaml"),
                                 "--model", str(tmp_path), "--compare", f"a={tmp_path}", "--compare", f"a={tmp_path}/y"])
    assert result.exit_code == 1
    assert "--compare names ['a'] more than once" in result.output
