"""The console of ``make pipeline``: step lines, progress, step logs, the summary, unknown papers.

A tiny two-step pipeline runs under the real KFP local runner (no mocks) to check the routing:
each step's whole output in its log file, one console line per step, a progress line from the
step's training-style log lines, ``cached`` on a re-run. The summary is checked against a real
MLflow store with real runs, versions, tags and aliases.
"""

import builtins
import io
import logging
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kfp import dsl, local
from mlflow import MlflowClient
from mlflow.entities import Metric

from pipelines import UnknownPaper, known_papers
from pipelines.console import CACHED, FAILED, OK, StepConsole, StepResult, format_progress, format_step_line, split_label
from pipelines.dag import paper_tracks
from pipelines.facts import caption_routes, dataset_rows
from pipelines.run import main, run_local
from pipelines.summary import comparisons, headline_metrics, print_summary, step_time_lines, track_lines
from rsvl.caption import PROVENANCE_FILE
from rsvl.config.evaluate import EvalSet
from rsvl.console import PROGRESS_LINE, Progress, format_eta
from rsvl.data.store import MANIFEST_FILE, QUARANTINE_FILE
from rsvl import kfp_cache
from rsvl.model_registry import registry_client

PAPERS = "closp, georsclip, iebaker, lrsclip, sar_text"


# --- unknown papers ----------------------------------------------------------------------------

def test_an_unknown_paper_lists_the_known_ones(repo_root):
    assert ", ".join(known_papers()) == PAPERS
    with pytest.raises(SystemExit) as stopped:
        main(["--paper", "unknown"])
    assert str(stopped.value.code) == (f"error: unknown paper 'unknown'; known papers: {PAPERS} "
                                       "(each a folder pipelines/<paper>/ with a config.yaml)")
    with pytest.raises(UnknownPaper, match="known papers: closp"):
        run_local("unknown", [], {}, cache=False)
    shell = subprocess.run([sys.executable, "-m", "pipelines.run", "--paper", "unknown"], cwd=repo_root,
                           capture_output=True, text=True, timeout=120)
    assert shell.returncode == 1 and "Traceback" not in shell.stderr
    assert shell.stderr.strip().startswith("error: unknown paper 'unknown'; known papers: closp, georsclip")


# --- step lines and progress lines -------------------------------------------------------------

def test_a_step_line_names_status_step_track_seconds_and_the_fact(tmp_path):
    result = StepResult("filter", "filter", "main", OK, 12.34, tmp_path / "filter.log")
    assert format_step_line(result, "598 rows kept, 2 quarantined") == (
        "ok     filter    main          12.3s  598 rows kept, 2 quarantined")
    cached = StepResult("train-captioner", "train", "captioner", CACHED, 0.05, tmp_path / "t.log")
    assert format_step_line(cached) == "cached train     captioner      0.1s"
    assert split_label("train-captioner", ["main", "captioner"]) == ("train", "captioner")
    assert split_label("filter", ["main", "captioner"]) == ("filter", "main")
    assert split_label("candidate-passed", ["main"]) == ("candidate-passed", "main")


def test_progress_lines_of_training_and_captioning_become_one_console_text(caplog):
    train = "[KFP Executor 2026-12-03 08:02:53,051 INFO]: step 2/16 epoch 0.25 loss 3.6508 lr 5.00e-04 14.4 samples/s ETA 0m31s"
    assert format_progress("train", train) == "... train: step 2/16, loss 3.6508, ETA 0m31s"
    assert format_progress("train", "[KFP Executor] Loading component") is None
    progress = Progress(logging.getLogger("rsvl.evaluate"), "captioning sar_test", 40, "images", every=3600)
    with caplog.at_level(logging.INFO, logger="rsvl.evaluate"):
        for _ in range(5):
            progress.add(8)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines  # the first and the last; the others fall inside `every`
    assert lines[-1].startswith("captioning sar_test: 40/40 images, ") and lines[-1].endswith("ETA 0m00s")
    assert PROGRESS_LINE.search(f"INFO]: {lines[0]}")["done"] == "8"
    assert format_progress("evaluate-captioner", f"[KFP Executor INFO]: {lines[0]}").startswith(
        "... evaluate-captioner: captioning sar_test 8/40 images, ETA ")
    assert format_eta(3725) == "1h02m05s" and format_eta(-3) == "0m00s"


def test_rows_kept_and_quarantined_are_read_from_the_dataset_folder(tmp_path):
    pq.write_table(pa.table({"sample_id": [f"s{i}" for i in range(7)]}), tmp_path / MANIFEST_FILE)
    assert dataset_rows(tmp_path) == (7, 0)
    pq.write_table(pa.table({"sample_id": ["bad1", "bad2"]}), tmp_path / QUARANTINE_FILE)
    assert dataset_rows(tmp_path) == (7, 2)


def test_the_caption_step_counts_the_captions_of_each_narrator_route(tmp_path):
    assert caption_routes(tmp_path) == {}  # no provenance table: nothing to say
    routes = ["optical", "a2c", "sa2c", "a2c", "optical", "a2c"]
    pq.write_table(pa.table({"sample_id": ["s"] * 6, "caption": [f"c{i}" for i in range(6)], "route": routes,
                             "rewriter": ["rule"] * 6}), tmp_path / PROVENANCE_FILE)
    assert list(caption_routes(tmp_path).items()) == [("a2c", 3), ("sa2c", 1), ("optical", 2)]


# --- routing, under the real KFP local runner ---------------------------------------------------

@dsl.component(base_image="python:3.11")
def chatty(steps: int) -> int:
    """Prints executor noise and training-style progress lines, like the real train step."""
    import logging
    import sys

    print("some library noise " * 5)
    print("a warning on stderr", file=sys.stderr)
    for step in range(1, steps + 1):
        logging.getLogger("rsvl.train").info("step %d/%d epoch 1.00 loss %.4f lr 1e-3 9.9 samples/s ETA 0m0%ds",
                                             step, steps, 1.0 / step, steps - step)
    return steps * 2


@dsl.component(base_image="python:3.11")
def broken(value: int) -> int:
    """Fails the way a library step does."""
    raise ValueError(f"value {value} is not allowed")


@dsl.pipeline(name="console-ok")
def ok_pipeline(steps: int = 3) -> None:
    first = chatty(steps=steps)
    first.set_display_name("train")
    second = chatty(steps=first.output)
    second.set_display_name("train-captioner")


@dsl.pipeline(name="console-broken")
def broken_pipeline(value: int = 4) -> None:
    first = chatty(steps=value)
    first.set_display_name("configure")
    broken(value=first.output).set_display_name("evaluate-captioner")


def _console(tmp_path, **kwargs) -> tuple[StepConsole, io.StringIO]:
    out = io.StringIO()
    facts = (lambda result: f"returned {result.outputs.get('Output')}")
    return StepConsole(tmp_path / "logs", ["main", "captioner"], describe=facts, console=out, **kwargs), out


def test_each_step_gets_one_console_line_a_progress_line_and_its_whole_output_in_its_log(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), enable_caching=True)
    printer = builtins.print
    console, out = _console(tmp_path, tty=True)
    with console.capture():
        ok_pipeline(steps=3)
    shown = out.getvalue()
    lines = [line.split("\r\x1b[K")[-1] for line in shown.split("\n") if line]
    assert [line.split()[:3] for line in lines] == [[OK, "train", "main"], [OK, "train", "captioner"]], shown
    assert lines[0].endswith("s  returned 6") and lines[1].endswith("s  returned 12")
    assert "\r\x1b[K... train-captioner: step 6/6, loss 0.1667, ETA 0m00s" in shown  # the live progress line
    assert "noise" not in shown and "warning" not in shown and "executor_input" not in shown
    log = (tmp_path / "logs" / "train-captioner.log").read_text()
    assert "Got executor_input" in log and "some library noise" in log and "a warning on stderr" in log
    assert "step 6/6 epoch" in log and "finished with status SUCCESS" in log
    assert "Running pipeline" in (tmp_path / "logs" / "pipeline.log").read_text()
    assert builtins.print is printer
    for result in console.results:  # the phases split the step's wall time, from the executor's own log times
        assert list(result.phases) == ["start-up", "body", "exit"] and min(result.phases.values()) > 0
        assert sum(result.phases.values()) == pytest.approx(result.seconds, abs=0.05)

    again, out = _console(tmp_path / "again")
    with again.capture():
        ok_pipeline(steps=3)
    assert [result.status for result in again.results] == [CACHED, CACHED], out.getvalue()
    assert [result.phases for result in again.results] == [{}, {}]
    assert out.getvalue().count("\n") == 2 and "... " not in out.getvalue()  # no terminal: no progress line here


def test_the_time_table_lists_each_step_its_phases_and_the_sums(tmp_path):
    ran = StepResult("train", "train", "main", OK, 10.0, tmp_path / "a.log",
                     phases={"start-up": 1.25, "body": 8.5, "exit": 0.25})
    cached = StepResult("filter", "filter", "main", CACHED, 0.5, tmp_path / "b.log")
    lines = step_time_lines([ran, cached], 12.0)
    assert lines[1].split() == ["step", "status", "total", "start-up", "body", "exit"]
    assert lines[2].split() == ["train", OK, "10.0", "1.2", "8.5", "0.2"]
    assert lines[3].split() == ["filter", CACHED, "0.5", "-", "-", "-"]
    assert lines[4].split() == ["all", "steps", "10.5", "1.2", "8.5", "0.2"]
    assert lines[5].split() == ["run", "(wall)", "12.0"]


def test_verbose_passes_everything_through_as_well(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), enable_caching=False)
    console, out = _console(tmp_path, verbose=True)
    with console.capture():
        ok_pipeline(steps=1)
    shown = out.getvalue()
    assert "Got executor_input" in shown and "some library noise" in shown and "a warning on stderr" in shown
    assert "\nok     train     main " in shown


def test_a_failed_step_is_named_with_its_error_and_log(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), enable_caching=False)
    console, out = _console(tmp_path)
    with pytest.raises(RuntimeError):
        with console.capture():
            broken_pipeline(value=4)
    failed = console.failed()
    assert (failed.label, failed.step, failed.track, failed.status) == ("evaluate-captioner", "evaluate", "captioner", FAILED)
    assert failed.error == "ValueError: value 8 is not allowed"
    assert out.getvalue().splitlines()[-1].startswith("FAILED evaluate  captioner ")
    assert out.getvalue().splitlines()[-1].endswith(f"full log: {failed.log}")
    assert "Traceback" in failed.log.read_text() and "value 8 is not allowed" in failed.log.read_text()


# --- the summary, from a real MLflow store ------------------------------------------------------

def _run(client: MlflowClient, experiment: str, metrics: dict[str, float]) -> str:
    run = client.create_run(experiment)
    stamp = int(time.time() * 1000)
    client.log_batch(run.info.run_id, metrics=[Metric(key, value, stamp, 0) for key, value in metrics.items()])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@pytest.fixture()
def tracks(tmp_path):
    """sar_text's local tracks, both on one small MLflow store in ``tmp_path``."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return {name: cfg.model_copy(update={"mlflow": cfg.mlflow.model_copy(update={"tracking_uri": uri})})
            for name, cfg in paper_tracks("sar_text", "local").items()}


def _register(client: MlflowClient, name: str, run_id: str, decision: str, reasons: str, *aliases: str) -> str:
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id).version
    client.set_model_version_tag(name, version, "gate.decision", decision)
    client.set_model_version_tag(name, version, "gate.reasons", reasons)
    for alias in aliases:
        client.set_registered_model_alias(name, alias, version)
    return version


def test_the_summary_shows_candidate_champion_and_comparisons_with_gate_and_aliases(tracks, tmp_path, capsys):
    client = registry_client(tracks["main"].mlflow.tracking_uri)
    experiment = client.create_experiment("sar_text")
    old = _run(client, experiment, {"sar_test.mR": 25.0, "optical_test.mR": 55.0, "vqa.overall": 0.6})
    new = _run(client, experiment, {
        "sar_test.mR": 28.5, "sar_test.std_mR": 24.0, "sar_test.i2t_r1": 10.0, "optical_test.mR": 59.2,
        "vqa.overall": 0.66, "sar_only.sar_test.mR": 31.1, "sar_only.sar_test.std_mR": 27.0,
        "sar_only.optical_test.mR": 20.0, "base.sar_test.mR": 12.0, "base.sar_test.std_mR": 9.0,
        "vqa.majority.overall": 0.58, "vqa.random.overall": 0.45, "loss": 1.5,
        "vqa.run.candidate.count": 0.3, "vqa.run.candidate.land": 0.9, "vqa.run.candidate.overall": 0.66,
        "vqa.run.base.count": 0.25, "vqa.run.base.land": 0.95, "vqa.run.base.overall": 0.7,
        "vqa.hrsid.candidate.count": 0.5, "vqa.hrsid.candidate.overall": 0.55, "vqa.hrsid.random.overall": 0.27})
    _register(client, "sar_rs_clip", old, "promoted", "first champion", "champion")
    _register(client, "sar_rs_clip", new, "passed", "sar_test.mR 28.5 >= 20; +3.5 over champion", "candidate")
    coca = _run(client, experiment, {"sar_test.BLEU_4": 0.27, "sar_test.CIDEr": 0.24, "base.sar_test.BLEU_4": 0.0,
                                     "base.sar_test.CIDEr": 0.01})
    _register(client, "sar_rs_coca", coca, "promoted", "sar_test.BLEU_4 0.27 >= 0.05", "candidate", "champion")

    print_summary(tracks, tmp_path / "kfp", 90.0, tmp_path / "logs", {"main": 2})
    shown = capsys.readouterr().out.splitlines()
    main = shown[shown.index("--- track main: sar_rs_clip ---"):]
    assert main[1] == "registered: sar_rs_clip v2 (aliases: candidate); champion: v1; candidate: v2"
    assert main[2] == "gate: passed: sar_test.mR 28.5 >= 20; +3.5 over champion"
    assert main[3].split() == ["metric", "candidate", "v2", "champion", "v1", "base", "sar_only", "majority", "random"]
    assert main[4].split() == ["sar_test.mR", "28.50", "25.00", "12.00", "31.10", "-", "-"]
    assert main[5].split() == ["sar_test.std_mR", "24.00", "-", "9.000", "27.00", "-", "-"]
    assert main[6].split() == ["optical_test.mR", "59.20", "55.00", "-", "20.00", "-", "-"]  # no std_mR logged: no row
    assert main[7].split() == ["vqa.overall", "0.660", "0.600", "-", "-", "0.580", "0.450"]
    # the transfer's verdict in words: ahead of the untuned base, behind its SAR-only control on sar_test
    assert main[8] == "  candidate vs base: sar_test.mR 28.50 vs 12.00 (+16.50): ahead on 1 of 1 sets"
    assert main[9] == ("  candidate vs sar_only: sar_test.mR 28.50 vs 31.10 (-2.60), "
                       "optical_test.mR 59.20 vs 20.00 (+39.20): ahead on 1 of 2 sets")
    assert main[10] == "  VQA accuracy (%), every model on every set:"
    assert main[11].split() == ["set", "model", "count", "land", "overall"]  # the types some set has, in order
    assert [line.split() for line in main[12:17]] == [
        ["run", "candidate", "30.0", "90.0", "66.0"], ["run", "base", "25.0", "95.0", "70.0"],
        ["hrsid", "candidate", "50.0", "-", "55.0"], ["hrsid", "random", "-", "-", "27.0"],
        ["---", "track", "captioner:", "sar_rs_coca", "---"]]
    coca_lines = shown[shown.index("--- track captioner: sar_rs_coca ---"):]
    assert coca_lines[1] == "registered: sar_rs_coca v1 (aliases: candidate, champion); champion: v1; candidate: v1"
    assert coca_lines[2] == "gate: promoted: sar_test.BLEU_4 0.27 >= 0.05"
    assert coca_lines[3].split() == ["metric", "candidate", "v1", "champion", "v1", "base"]
    assert coca_lines[4].split() == ["sar_test.BLEU_4", "0.270", "0.270", "0.000"]
    assert coca_lines[5].split() == ["sar_test.CIDEr", "0.240", "0.240", "0.010"]
    assert not coca_lines[6].startswith("  candidate vs")  # a captioning track has no retrieval verdict
    assert shown[0] == "=== sar_text pipeline finished in 1.5 min ==="
    assert shown[-2] == f"task outputs: {(tmp_path / 'kfp').resolve()}; step logs: {tmp_path / 'logs'}"


def test_a_track_with_nothing_registered_says_so(tracks):
    client = registry_client(tracks["captioner"].mlflow.tracking_uri)
    assert track_lines(tracks["captioner"], client) == ["--- track captioner: sar_rs_coca ---",
                                                        "nothing registered under 'sar_rs_coca'"]


def test_headline_metrics_and_comparisons(tracks):
    assert headline_metrics(tracks["main"]) == ["sar_test.mR", "sar_test.std_mR", "optical_test.mR",
                                                "optical_test.std_mR", "hrsid.mR", "hrsid.std_mR", "vqa.overall"]
    assert headline_metrics(tracks["captioner"]) == ["sar_test.BLEU_4", "sar_test.CIDEr", "hrsid.CIDEr"]
    main = tracks["main"]
    seloc = EvalSet(name="seloc", dataset="default/localisation", tasks=["localisation"])
    with_seloc = main.model_copy(update={"evaluate": main.evaluate.model_copy(update={"sets": [seloc]})})
    assert headline_metrics(with_seloc) == ["sar_test.mR", "seloc.Rmi", "vqa.overall"]  # the gate's metric first
    found = comparisons({"a.b": 1.0, "x.a.b": 2.0, "a.y.b": 3.0, "a.b.z": 4.0, "stage.x.a.b": 5.0}, ["a.b"])
    assert found == {"x": {"a.b": 2.0}, "y": {"a.b": 3.0}, "z": {"a.b": 4.0}}
    assert list(comparisons({"x.a.b": 1.0, "a.base.b": 2.0}, ["a.b"])) == ["base", "x"]  # the untuned start first


def test_a_step_whose_cached_outputs_fail_their_digest_runs_again_and_its_line_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(local.cache, "LocalCache", local.cache.LocalCache)  # KFP's own class again afterwards
    kfp_cache.install()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), enable_caching=True)
    first, _ = _console(tmp_path / "first")
    with first.capture():
        ok_pipeline(steps=2)
    [entry] = [p for p in (tmp_path / "root" / ".kfp_cache").glob("*.json") if p.read_text() == '{"Output": 4}']
    entry.write_text('{"Output": 5}')  # the train step's cached answer, edited
    again, out = _console(tmp_path / "again")
    with again.capture():
        ok_pipeline(steps=2)
    local.cache.reset_local_cache_singleton()
    assert [result.status for result in again.results] == [OK, CACHED], out.getvalue()
    assert out.getvalue().split("\n")[0].endswith(
        "s  returned 4 (cached outputs not used: its JSON changed since the step wrote it; see its log)")
