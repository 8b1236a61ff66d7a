"""The ``rsvl`` command line: a thin front over the library (every command is a library call)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from rsvl.errors import RsvlError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

app = typer.Typer(help="Remote-sensing vision-language workflows.", no_args_is_help=True)
data_app = typer.Typer(help="Ingest, generate, validate and version datasets.", no_args_is_help=True)
config_app = typer.Typer(help="Check and print run configurations.", no_args_is_help=True)
app.add_typer(data_app, name="data")
models_app = typer.Typer(help="List model architectures.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(models_app, name="models")

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="pipelines/<paper>/config.yaml")]
ProfileOpt = Annotated[str, typer.Option("--profile", help="local or cluster")]
PaperTrackOpt = Annotated[str, typer.Option("--track", help="main, or a track under the config's tracks (captioner)")]
TrackOpt = Annotated[bool, typer.Option("--track", help="dvc add the enclosing data/ directory")]
PushOpt = Annotated[bool, typer.Option("--push", help="dvc push after tracking (implies --track)")]


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def _track(out: Path, push: bool) -> None:
    from rsvl.data.versioning import _find_root, data_version, track

    root = _find_root(out.resolve())
    top = out.resolve().relative_to(root).parts[0]
    md5 = track(root, top, push=push)
    version = data_version(out, root)
    typer.echo(f"tracked {top}/ with DVC: md5 {md5}{' (pushed)' if push else ''}; version tag {version.tag()}")


@data_app.command("formats")
def data_formats() -> None:
    """List the source formats ``rsvl data ingest`` understands."""
    from rsvl.data.adapters import formats

    for name in formats():
        typer.echo(name)


@data_app.command("ingest")
def data_ingest(
    format: Annotated[str, typer.Option("--format", help="source layout; see `rsvl data formats`")],
    source: Annotated[Path, typer.Option("--source", help="source file or directory")],
    out: Annotated[Path, typer.Option("--out", help="dataset directory to write")],
    name: Annotated[Optional[str], typer.Option("--name", help="dataset name")] = None,
    track: TrackOpt = False,
    push: PushOpt = False,
) -> None:
    """Convert a public dataset layout into the canonical format (manifest + media)."""
    from rsvl.data.adapters import ingest

    try:
        report = ingest(format, source, out, name=name)
        typer.echo(report.summary())
        if track or push:
            _track(out, push)
    except RsvlError as err:
        _fail(err)


@data_app.command("generate")
def data_generate(
    out: Annotated[Path, typer.Option("--out", help="directory for the default datasets")] = Path("data/default"),
    seed: Annotated[int, typer.Option(help="random seed; same seed, same bytes")] = 0,
    scale: Annotated[int, typer.Option(help="size multiplier (1 = quick default)")] = 1,
    track: TrackOpt = False,
    push: PushOpt = False,
) -> None:
    """Write the embedded default dataset (optical scenes, SAR chips, paired S1/S2, unpaired crisis S1/S2)."""
    from rsvl.data.generate import generate_default

    try:
        for report in generate_default(out, seed=seed, scale=scale):
            typer.echo(report.summary())
        if track or push:
            _track(out, push)
    except RsvlError as err:
        _fail(err)


@data_app.command("validate")
def data_validate(
    directory: Annotated[Path, typer.Argument(help="a dataset directory or a directory of datasets")],
    config: ConfigOpt = None,
    profile: ProfileOpt = "local",
    max_bad_fraction: Annotated[
        Optional[float], typer.Option(help="fail when more than this share of rows is bad")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option(help="write a filtered copy here: the good rows only, the bad ones quarantined")
    ] = None,
) -> None:
    """Check datasets with great-expectations; quarantine bad rows; fail past the limit.

    In place, the manifest keeps listing the quarantined rows and readers skip them; with
    ``--out`` the copy's manifest lists only the good rows and DIRECTORY is left unchanged.
    """
    from rsvl.config import CaptionRules, load_config
    from rsvl.data.filtering import filter_tree
    from rsvl.data.validate import RAW_POOL_KEY, raw_pools, validate_tree
    from rsvl.processes import available_cpus

    try:
        for pool in raw_pools(directory):
            from rsvl.data.store import read_meta

            typer.echo(f"{pool}: not validated here, a raw pool: {read_meta(pool)[RAW_POOL_KEY]}")
        data_cfg = load_config(config, profile).data if config else None
        rules = data_cfg.captions if data_cfg else CaptionRules()
        limit = max_bad_fraction if max_bad_fraction is not None else (data_cfg.max_bad_fraction if data_cfg else 0.01)
        if out is None:
            for report in validate_tree(directory, rules=rules, max_bad_fraction=limit, processes=available_cpus()):
                typer.echo(report.summary())
            return
        for report, filtered in filter_tree(directory, out, rules=rules, max_bad_fraction=limit):
            typer.echo(f"{report.summary()}; {filtered.summary()}")
    except RsvlError as err:
        _fail(err)


@data_app.command("version")
def data_version_cmd(directory: Annotated[Path, typer.Argument(help="a dataset directory under data/")]) -> None:
    """Print the DVC data version (md5 of the covering .dvc file and the path inside it)."""
    from rsvl.data.versioning import data_version

    try:
        typer.echo(data_version(directory).tag())
    except RsvlError as err:
        _fail(err)


@data_app.command("track")
def data_track(
    directory: Annotated[Path, typer.Argument(help="a dataset directory under data/")] = Path("data"),
    push: PushOpt = False,
) -> None:
    """``dvc add`` the top-level directory holding ``directory`` and print the data version."""
    try:
        _track(directory, push)
    except RsvlError as err:
        _fail(err)


@data_app.command("push")
def data_push(target: Annotated[str, typer.Argument()] = "data") -> None:
    """Upload the tracked data version to the default DVC remote."""
    from rsvl.data.versioning import push

    push(Path.cwd(), target)


@data_app.command("pull")
def data_pull(target: Annotated[str, typer.Argument()] = "data") -> None:
    """Download and check out the data version recorded in ``data.dvc``."""
    from rsvl.data.versioning import pull

    pull(Path.cwd(), target)


@data_app.command("remote")
def data_remote(url: Annotated[str, typer.Argument(help="directory, s3://bucket/prefix, ...")]) -> None:
    """Point the default DVC remote at ``url`` for this machine (.dvc/config.local)."""
    from rsvl.data.versioning import set_remote

    set_remote(Path.cwd(), url)
    typer.echo(f"default DVC remote is now {url}")


@data_app.command("ker-vocabulary")
def data_ker_vocabulary(
    captions: Annotated[Path, typer.Option("--captions", help="the captions_text folder of the shared data")] = Path(
        "../shared/data/captions_text"
    ),
    out: Annotated[Path, typer.Option("--out", help="vocabulary file to write")] = Path(
        "src/rsvl/data/resources/ker_vocabulary.txt"
    ),
) -> None:
    """Build the iEBAKER KER keyword vocabulary (top-512 caption words of RSICD, RSITMD, NWPU; union)."""
    from rsvl.data.ker_vocabulary import build_vocabulary, write_vocabulary

    try:
        vocab = build_vocabulary(captions)
        write_vocabulary(vocab, out)
    except RsvlError as err:
        _fail(err)
    counts = ", ".join(f"{dataset} {len(words)}" for dataset, words in vocab.per_dataset.items())
    typer.echo(f"{len(vocab.words)} words ({counts}) written to {out}")


TEXT_STATS_TOKENIZERS = ["ViT-B-32", "rsvl-effnetlite0-minilm"]
"""Tokenizers ``rsvl data text-stats`` measures with by default: CLIP's BPE and MiniLM's WordPiece."""


@data_app.command("text-stats")
def data_text_stats(
    csv_path: Annotated[Path, typer.Argument(help="a filename,title caption CSV (images not needed)")],
    tokenizer: Annotated[Optional[list[str]], typer.Option(
        "--tokenizer", help="architecture whose tokenizer counts tokens (repeatable; default: ViT-B-32 and "
                            "rsvl-effnetlite0-minilm)")] = None,
    tokens: Annotated[bool, typer.Option(help="add lengths in tokens of the captions and long-text proxies")] = True,
) -> None:
    """Print the text statistics of a caption CSV as JSON: words, KER keyword coverage and (under
    ``tokens``) caption and long-text-proxy lengths in tokens per tokenizer."""
    from rsvl.data.caption_stats import caption_text_stats

    try:
        stats = caption_text_stats(csv_path)
        if tokens:
            from rsvl.data.caption_stats import caption_token_stats
            from rsvl.models.token_counts import tokenizer_by_name

            names = tokenizer or TEXT_STATS_TOKENIZERS
            stats["tokens"] = caption_token_stats(csv_path, {name: tokenizer_by_name(name) for name in names})
        typer.echo(json.dumps(stats, indent=2))
    except RsvlError as err:
        _fail(err)


@config_app.command("check")
def config_check(
    path: Annotated[Path, typer.Argument(help="pipelines/<paper>/config.yaml")],
    profile: ProfileOpt = "local",
    set_: Annotated[list[str], typer.Option("--set", help="dotted.key=value override")] = [],
    track: PaperTrackOpt = "main",
    explain_: Annotated[bool, typer.Option("--explain", help="print each value with the layer it came from")] = False,
) -> None:
    """Validate a config and print the resolved values as JSON (``--explain``: one line per value with its source)."""
    from rsvl.config import explain, format_explain, load_config

    try:
        if explain_:
            typer.echo(format_explain(explain(path, profile, set_, track)))
            return
        cfg = load_config(path, profile, set_, track)
    except RsvlError as err:
        _fail(err)
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))


@models_app.command("list")
def models_list() -> None:
    """List the rsvl architectures (from ``models/``) that resolve on this machine."""
    from rsvl.models.architectures import list_architectures

    for name in list_architectures():
        typer.echo(name)


@app.command("train")
def train(
    config: Annotated[Path, typer.Option("--config", help="pipelines/<paper>/config.yaml")],
    profile: ProfileOpt = "local",
    set_: Annotated[list[str], typer.Option("--set", help="dotted.key=value override")] = [],
    track: PaperTrackOpt = "main",
    data: Annotated[
        Optional[Path], typer.Option("--data", help="dataset directory (default: <data.root>/<train.dataset>)")
    ] = None,
    run_name: Annotated[
        Optional[str], typer.Option("--run-name", help="resume this run (default: a new unique name)")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="output folder (default: build/train/<run name>)")
    ] = None,
) -> None:
    """Fit the configured model with Ray Train, tracked in MLflow; resumable by run name.

    With ``train.stages`` the stages train in order (progressive transfer), then the ablations;
    a re-run with the same name reuses the stages that finished. ``train.backend: kuberay`` (the
    cluster profile) submits the run as a RayJob, as the pipeline's train step does.
    """
    from rsvl.config import load_config
    from rsvl.logs import show_progress
    from rsvl.steps.training import run_train
    from rsvl.train import new_run_name

    show_progress()
    try:
        cfg = load_config(config, profile, set_, track)
        dataset = data or Path(cfg.data.root) / cfg.train.dataset
        name = run_name or new_run_name(cfg.paper)
        result = run_train(cfg, dataset, out or Path("build") / "train" / name, run_name=name)
    except RsvlError as err:
        _fail(err)
    key = f"{cfg.train.eval_split}_mR"
    for stage, fitted in result.stages.items():
        typer.echo(f"stage {stage}: {_fit_line(fitted, key)}")
    for ablation, fitted in result.ablations.items():
        steps = sum(part.steps for part in fitted.stages.values())
        typer.echo(f"ablation {ablation} ({steps} steps): {_fit_line(fitted, key)}")
    typer.echo(_plan_line(name, result))
    if key in result.metrics:
        before = f"{result.baseline[key]:.2f} -> " if key in result.baseline else ""
        typer.echo(f"{key}: {before}{result.metrics[key]:.2f} (MLflow run {result.mlflow_run_id})")


def _plan_line(run_name: str, result) -> str:
    """The plan in a line: the name to re-launch it with, its steps and time over every fit, where its model is.

    A staged plan's result is its last stage's fit (named ``<run>-<stage>``); re-launching with
    that name would start a new plan, so the plan's own name is shown, with the totals of its
    stages and ablations.
    """
    fits = [*result.stages.values(),
            *(part for ablation in result.ablations.values() for part in ablation.stages.values())] or [result]
    steps = sum(fit.steps for fit in fits)
    seconds = sum(fit.seconds for fit in fits)
    over = f" over {len(fits)} fits" if result.stages else ""
    return f"run {run_name}: {steps} steps in {seconds:.0f} s{over}; model in {result.model_dir}"


def _fit_line(result, key: str) -> str:
    """One fit in a line: run, steps, held-out mean recall before -> after, whether it was reused."""
    scores = ""
    if key in result.metrics:
        before = f"{result.baseline[key]:.2f} -> " if key in result.baseline else ""
        scores = f", {key} {before}{result.metrics[key]:.2f}"
    reused = " (finished before, reused)" if result.reused else ""
    return f"run {result.run_name}, {result.steps} steps{scores}{reused}"


ConfigPathOpt = Annotated[Path, typer.Option("--config", help="pipelines/<paper>/config.yaml")]
SetOpt = Annotated[list[str], typer.Option("--set", help="dotted.key=value override")]
ModelDirOpt = Annotated[Path, typer.Option("--model", help="a saved model folder (train's out/model)")]


@app.command("evaluate")
def evaluate(
    config: ConfigPathOpt,
    model: ModelDirOpt,
    profile: ProfileOpt = "local",
    set_: SetOpt = [],
    track: PaperTrackOpt = "main",
    out: Annotated[Path, typer.Option("--out", help="report folder")] = Path("build/evaluate"),
    run_id: Annotated[Optional[str], typer.Option("--run-id", help="log into this MLflow run (the training run)")] = None,
    compare: Annotated[list[str], typer.Option(
        "--compare", help="name=model_dir: also score this saved model beside it "
                          "(e.g. sar_only=OUT/ablations/sar_only/model)",
    )] = [],
) -> None:
    """Score a model on the config's pinned eval sets: metrics, pictures, Markdown and HTML report.

    ``--compare`` models, and the untuned base model when ``evaluate.compare_base`` is set, are
    scored on the same sets and reported beside it (``<name>.<eval set>.<metric>``).
    """
    from rsvl.config import load_config
    from rsvl.errors import ConfigError
    from rsvl.steps.evaluation import run_evaluation

    try:
        pairs = [item.split("=", 1) for item in compare]
        if any(len(pair) != 2 or not pair[0] or not pair[1] for pair in pairs):
            raise ConfigError(f"--compare takes name=model_dir, got {compare}")
        names = [pair[0] for pair in pairs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ConfigError(f"--compare names {repeated} more than once; give each comparison model its own name")
        cfg = load_config(config, profile, set_, track)
        evaluation = run_evaluation(cfg, model, out, mlflow_run_id=run_id, compare={n: Path(p) for n, p in pairs},
                                    compare_base=cfg.evaluate.compare_base)
    except RsvlError as err:
        _fail(err)
    for key, value in sorted({**evaluation.metrics, **evaluation.comparison_metrics}.items()):
        typer.echo(f"{key}: {value:.4f}")
    for key, reason in sorted(evaluation.result.unavailable.items()):
        typer.echo(f"{key}: unavailable ({reason})")
    for name, reason in sorted(evaluation.data.skipped.items()):
        typer.echo(f"eval set {name}: skipped ({reason})")
    typer.echo(f"data: {evaluation.data.version()}; report: {evaluation.result.report_html}")


@app.command("register")
def register(
    config: ConfigPathOpt,
    model: ModelDirOpt,
    train_data: Annotated[Path, typer.Option("--train-data", help="the dataset the model was trained on")],
    profile: ProfileOpt = "local",
    set_: SetOpt = [],
    track: PaperTrackOpt = "main",
    run_id: Annotated[Optional[str], typer.Option("--run-id", help="the MLflow training run")] = None,
    pipeline_run_id: Annotated[str, typer.Option("--pipeline-run-id", help="lineage: the pipeline run")] = "manual",
) -> None:
    """Register a model (alias candidate) with its lineage; an identical model reuses its version."""
    from rsvl.config import load_config
    from rsvl.steps.registration import run_register

    try:
        cfg = load_config(config, profile, set_, track)
        registration = run_register(cfg, model, train_data, pipeline_run_id, mlflow_run_id=run_id)
    except RsvlError as err:
        _fail(err)
    state = "registered" if registration.created else "unchanged, reused"
    typer.echo(f"{registration.uri} ({state}); aliases: {', '.join(registration.aliases)}")


@app.command("gate")
def gate(
    config: ConfigPathOpt,
    version: Annotated[int, typer.Option("--version", help="the candidate's registry version")],
    profile: ProfileOpt = "local",
    set_: SetOpt = [],
    track: PaperTrackOpt = "main",
    out: Annotated[Path, typer.Option("--out", help="report folder")] = Path("build/gate"),
) -> None:
    """Score candidate and champion on the same pinned data; promote the candidate only if it passes."""
    from rsvl.config import load_config
    from rsvl.steps.promotion import run_gate

    try:
        cfg = load_config(config, profile, set_, track)
        outcome = run_gate(cfg, version, out)
    except RsvlError as err:
        _fail(err)
    for reason in outcome.decision.reasons:
        typer.echo(reason)
    champion = outcome.champion if outcome.champion is not None else "none"
    typer.echo(f"{cfg.registry.model_name} v{version}: {outcome.verdict}; champion is v{champion}; "
               f"report {outcome.report}")


@app.command("index")
def index(
    model: Annotated[str, typer.Option("--model", help="models:/<name>@<alias>, models:/<name>/<version> or a model folder")],
    data: Annotated[Path, typer.Option("--data", help="a canonical dataset folder")],
    out: Annotated[Path, typer.Option("--out", help="the index folder (a stopped build resumes from it)")],
    kind: Annotated[str, typer.Option("--kind", help="auto (exact up to 250k images, HNSW above), flat-ip or hnsw-ip")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="images per forward pass")] = 64,
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help="the MLflow registry for models:/ URIs")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu or cuda (default: cuda when available)")] = None,
) -> None:
    """Embed every image of a dataset with a model and write a searchable FAISS index tied to that model."""
    from rsvl.model_registry.embedder import load_embedder
    from rsvl.search.index import KEPT_MODEL, build_index
    from rsvl.search.model_ref import resolve_model

    try:
        folder, ref = resolve_model(model, tracking_uri, cache_dir=out / KEPT_MODEL)
        manifest = build_index(load_embedder(folder, device), ref, data, out, batch_size=batch_size, kind=kind)
    except (RsvlError, ValueError) as err:
        _fail(err)
    typer.echo(f"{out}: {manifest['entries']} images indexed ({manifest['index']['kind']}), "
               f"{manifest['skipped']} skipped (see skipped.parquet); model {ref.uri}, data {manifest['dataset']['version']}")


def _search_url(url: str, text: str, k: int) -> list[dict]:
    import json
    import urllib.request

    request = urllib.request.Request(f"{url.rstrip('/')}/search", data=json.dumps({"text": text, "k": k}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["results"]


def _search_index(index_dir: Path, text: str, k: int, model: str | None, tracking_uri: str | None) -> list[dict]:
    from rsvl.search.service import open_index, text_query

    searcher, embedder = open_index(str(index_dir), model, tracking_uri, "cpu")
    return [{"rank": n + 1, "score": hit.score, **searcher.describe(hit.entry)}
            for n, hit in enumerate(searcher.search(text_query(embedder, text), k))]


@app.command("search")
def search(
    index_dir: Annotated[Path, typer.Option("--index", help="an index folder written by rsvl index")],
    text: Annotated[str, typer.Option("--text", help="what to look for")],
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="results")] = 10,
    url: Annotated[Optional[str], typer.Option("--url", help="ask a running rsvl serve instead (http://127.0.0.1:8765)")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="default: the model version the index records")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help="the MLflow registry for models:/ URIs")] = None,
) -> None:
    """Search an index by text and print the ranking, with precision@k from the archive's boxes and masks."""
    from rsvl.search.index import current_index, read_manifest_file
    from rsvl.search.relevance import archive_facts, precision_lines

    try:
        manifest = read_manifest_file(current_index(index_dir))
        results = _search_url(url, text, k) if url else _search_index(index_dir, text, k, model, tracking_uri)
    except RsvlError as err:
        _fail(err)
    for result in results:
        typer.echo(f"{result['rank']:>4}  {result['score']:.4f}  {result['sample_id']}  {result.get('caption') or ''}")
    for line in precision_lines([r["sample_id"] for r in results], archive_facts(manifest["dataset"]["path"]), k):
        typer.echo(line)


@app.command("serve")
def serve(
    index_dir: Annotated[Path, typer.Option("--index", help="an index folder, or a folder of versions with CURRENT")],
    model: Annotated[Optional[str], typer.Option("--model", help="default: the model the index was built with")] = None,
    host: Annotated[str, typer.Option("--host", help="interface to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8765,
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help="the MLflow registry for models:/ URIs")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu or cuda")] = None,
) -> None:
    """Serve text and image search over an index: a web page at /, the API at /search, /search/image, /docs."""
    import uvicorn

    from rsvl.search.service import load_service

    try:
        application = load_service(str(index_dir), model, tracking_uri, device)
    except RsvlError as err:
        _fail(err)
    typer.echo(f"search page: http://{host}:{port}/  (API docs: /docs)")
    uvicorn.run(application, host=host, port=port, log_level="warning")


def main() -> None:  # pragma: no cover - console entry for `python -m rsvl`
    """Run the CLI."""
    sys.exit(app())
