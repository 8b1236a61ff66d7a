"""The Dockerfiles of docker/, checked statically (no Docker daemon here): a small parser and the
rules a reviewer applies (pinned bases, non-root user, no baked-in secrets, the lock installed,
lineage without .git), each rule proven to fail on a Dockerfile that breaks it. The CPU image's
lock filter is executed for real against requirements.lock.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
RSVL_DOCKERFILES = [DOCKER / "Dockerfile.cpu", DOCKER / "Dockerfile.cuda"]
ALL_DOCKERFILES = [*RSVL_DOCKERFILES, DOCKER / "Dockerfile.mlflow"]
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE|(^|_)KEY($|_)|ACCESS_KEY", re.I)
SECRET_VALUE = re.compile(
    r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY|gh[pousr]_[A-Za-z0-9]{20,}|hf_[A-Za-z0-9]{20,}")
ROOT_USERS = {"root", "0"}


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case), its raw arguments and first line number."""

    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions: joins ``\\`` continuations, drops comments and blanks."""
    instructions: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue
        if not buffer:
            start = number
        continued = stripped.endswith("\\")
        buffer.append((stripped[:-1] if continued else stripped).strip())
        if not continued:
            joined = " ".join(part for part in buffer if part)
            keyword, _, args = joined.partition(" ")
            instructions.append(Instruction(keyword.upper(), args.strip(), start))
            buffer = []
    if buffer:
        raise ValueError(f"line {start}: the file ends inside a continued instruction")
    return instructions


def substitute(value: str, variables: dict[str, str]) -> str:
    """Expand ``$NAME`` and ``${NAME}`` with ``variables`` (unknown names expand to nothing, as Docker does)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), ""), value)


def key_values(args: str) -> list[tuple[str, str]]:
    """The pairs of an ``ENV``/``ARG``/``LABEL``: ``a=b c=d``, or the legacy ``ENV key value``."""
    tokens = shlex.split(args)
    if tokens and "=" not in tokens[0]:
        return [(tokens[0], " ".join(tokens[1:]))]
    return [tuple(token.split("=", 1)) if "=" in token else (token, "") for token in tokens]


def image_is_pinned(image: str) -> bool:
    """A digest, or an explicit tag other than ``latest``."""
    if "@" in image:
        return bool(re.search(r"@sha256:[0-9a-f]{64}$", image))
    name, sep, tag = image.rsplit("/", 1)[-1].partition(":")
    return bool(sep and name and tag and tag != "latest")


def check_dockerfile(text: str, *, rsvl_image: bool) -> list[str]:
    """The rule violations of a Dockerfile (empty when it passes).

    Every image: bases pinned (after ``ARG`` defaults are expanded), a non-root ``USER`` in the final
    stage set before ``CMD``/``ENTRYPOINT``, no secret-named or secret-looking ``ENV``/``ARG``, no
    remote ``ADD``, no copy of the whole build context. ``rsvl_image`` adds the project's rules:
    the lock copied and installed, the package installed with ``--no-deps``, offline Hugging Face,
    ``WORKDIR /app``, the architecture configs, uid 1000, and ``RSVL_GIT_COMMIT`` from build arg to env.
    """
    instructions = parse_dockerfile(text)
    problems: list[str] = []
    global_args: dict[str, str] = {}
    stage_names: set[str] = set()
    stage_starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    if not stage_starts:
        return ["no FROM instruction"]
    for ins in instructions[: stage_starts[0]]:
        if ins.keyword == "ARG":
            global_args.update(key_values(ins.args))
    for index in stage_starts:
        tokens = [t for t in instructions[index].args.split() if not t.startswith("--")]
        image = substitute(tokens[0], global_args)
        if image not in stage_names and not image_is_pinned(image):
            problems.append(f"line {instructions[index].line}: FROM {image!r} is not pinned "
                            "(give a version tag or digest, never latest)")
        if len(tokens) == 3 and tokens[1].upper() == "AS":
            stage_names.add(tokens[2])

    for ins in instructions:
        if ins.keyword in ("ENV", "ARG"):
            for name, value in key_values(ins.args):
                if SECRET_NAME.search(name):
                    problems.append(
                        f"line {ins.line}: {ins.keyword} {name} bakes a secret into the image or its history")
                elif SECRET_VALUE.search(value):
                    problems.append(f"line {ins.line}: {ins.keyword} {name} holds what looks like a credential")
        if ins.keyword == "ADD" and re.search(r"https?://", ins.args):
            problems.append(f"line {ins.line}: ADD of a URL (unpinned, unchecked download); use RUN with a checksum")
        if ins.keyword == "COPY":
            sources = [t for t in shlex.split(ins.args) if not t.startswith("--")][:-1]
            if any(source in (".", "./", "*") for source in sources):
                problems.append(f"line {ins.line}: COPY of the whole build context; copy what the image needs")

    final = instructions[stage_starts[-1]:]
    users = [(i, substitute(ins.args, global_args).split(":")[0])
             for i, ins in enumerate(final) if ins.keyword == "USER"]
    starts = [i for i, ins in enumerate(final) if ins.keyword in ("CMD", "ENTRYPOINT")]
    if not users:
        problems.append("the final stage sets no USER: the container would run as root")
    elif users[-1][1] in ROOT_USERS:
        problems.append(f"the final stage runs as {users[-1][1]!r}")
    elif starts and not any(i < starts[0] and user not in ROOT_USERS for i, user in users):
        problems.append("no non-root USER before CMD/ENTRYPOINT")

    if rsvl_image:
        problems += _rsvl_rules(final)
    return problems


def _rsvl_rules(final: list[Instruction]) -> list[str]:
    problems = []
    copies = [ins.args for ins in final if ins.keyword == "COPY"]
    runs = [ins.args for ins in final if ins.keyword == "RUN"]
    env = dict(pair for ins in final if ins.keyword == "ENV" for pair in key_values(ins.args))
    args = dict(pair for ins in final if ins.keyword == "ARG" for pair in key_values(ins.args))
    if not any("requirements.lock" in c.split()[:-1] for c in copies):
        problems.append("requirements.lock is not copied into the image")
    if not any(re.search(r"pip install\b[^;&|]*-r \S*requirements\S*\.lock", r) for r in runs):
        problems.append("no `pip install -r` of the lock: the pinned stack is not what gets installed")
    if not any(re.search(r"pip install --no-deps \.(\s|$)", r) for r in runs):
        problems.append(
            "the package is not installed with `pip install --no-deps .` (the lock must decide every version)")
    if env.get("HF_HUB_OFFLINE") != "1":
        problems.append("HF_HUB_OFFLINE=1 is not the default")
    if not any(ins.keyword == "WORKDIR" and ins.args == "/app" for ins in final):
        problems.append("WORKDIR is not /app")
    if "RSVL_GIT_COMMIT" not in args or env.get("RSVL_GIT_COMMIT") != "${RSVL_GIT_COMMIT}":
        problems.append("RSVL_GIT_COMMIT does not pass from a build arg into the environment (lineage without .git)")
    writable = [r for r in runs if re.search(r"install -d -o (rsvl|1000) ", r)]
    missing = [d for d in ("/app/build", "/gcs", "/minio", "/s3")
               if not any(re.search(rf"\s{d}(\s|$)", r) for r in writable)]
    if missing:
        problems.append(f"{missing} are not created writable for the user (run outputs; KFP v2 artifact roots)")
    users = [ins.args for ins in final if ins.keyword == "USER"]
    if not users or users[-1].split(":")[0] not in ("1000", "rsvl"):
        problems.append("the runtime user is not uid 1000")
    if not any("useradd" in r and "--uid 1000" in r and re.search(r"\brsvl\b", r) for r in runs):
        problems.append("no user rsvl with uid 1000 is created")
    return problems


# ---------------------------------------------------------------- the real Dockerfiles pass

@pytest.mark.parametrize("path", ALL_DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_the_rules(path):
    assert check_dockerfile(path.read_text(), rsvl_image=path in RSVL_DOCKERFILES) == []


# ---------------------------------------------------------------- and each rule bites

def _mutate(text: str, old: str, new: str) -> str:
    assert old in text, f"mutation anchor {old!r} not found"
    return text.replace(old, new, 1)


GOOD = (DOCKER / "Dockerfile.cpu").read_text() if (DOCKER / "Dockerfile.cpu").is_file() else ""
FROM_ARG = re.search(r"^ARG PYTHON_IMAGE=.*$", GOOD, re.M).group(0) if GOOD else "ARG PYTHON_IMAGE="


@pytest.mark.parametrize("old,new,expected", [
    (FROM_ARG, "ARG PYTHON_IMAGE=python:latest", "not pinned"),
    (FROM_ARG, "ARG PYTHON_IMAGE=python", "not pinned"),
    (FROM_ARG, "ARG PYTHON_IMAGE=python@sha256:abc", "not pinned"),
    ("USER 1000:1000\n", "", "sets no USER"),
    ("USER 1000:1000\n", "USER root\n", "runs as 'root'"),
    ("USER 1000:1000\nCMD [\"rsvl\", \"--help\"]", "CMD [\"rsvl\", \"--help\"]\nUSER 1000:1000", "before CMD"),
    ("WORKDIR /app\n", "WORKDIR /app\nENV AWS_SECRET_ACCESS_KEY=abc123\n", "bakes a secret"),
    ("WORKDIR /app\n", "WORKDIR /app\nARG GITHUB_TOKEN\n", "bakes a secret"),
    ("WORKDIR /app\n", "WORKDIR /app\nENV HF_ENDPOINT_AUTH=hf_" + "a" * 30 + "\n", "looks like a credential"),
    ("WORKDIR /app\n", "WORKDIR /app\nADD https://example.com/x.tar.gz /tmp/\n", "ADD of a URL"),
    ("COPY src ./src\n", "COPY . .\n", "whole build context"),
    ("COPY requirements.lock ./\n", "", "requirements.lock is not copied"),
    ("pip install -r /tmp/requirements.cpu.lock", "pip install torch", "no `pip install -r` of the lock"),
    ("pip install --no-deps . &&", "pip install . &&", "--no-deps ."),
    ("HF_HUB_OFFLINE=1", "HF_HUB_OFFLINE=0", "HF_HUB_OFFLINE=1"),
    ("WORKDIR /app\n", "WORKDIR /srv\n", "WORKDIR is not /app"),
    ("ENV RSVL_GIT_COMMIT=${RSVL_GIT_COMMIT}\n", "", "RSVL_GIT_COMMIT"),
    ("USER 1000:1000\n", "USER 1001:1001\n", "uid 1000"),
    (" /gcs /minio /s3\n", "\n", "KFP v2 artifact roots"),
])
def test_each_rule_rejects_a_bad_dockerfile(old, new, expected):
    bad = _mutate(GOOD, old, new)
    problems = check_dockerfile(bad, rsvl_image=True)
    assert any(expected in problem for problem in problems), problems


def test_parser_joins_continuations_and_skips_comments():
    text = "# c\nFROM a:1 AS build\nRUN x \\\n  # inner comment\n  && y\n\nUSER 1\n"
    assert parse_dockerfile(text) == [Instruction("FROM", "a:1 AS build", 2), Instruction("RUN", "x && y", 3),
                                      Instruction("USER", "1", 7)]
    with pytest.raises(ValueError, match="continued"):
        parse_dockerfile("FROM a:1\nRUN x \\\n")


def test_multi_stage_build_may_start_from_an_earlier_stage():
    text = "FROM python:3.11.13-slim AS build\nRUN true\nFROM build\nUSER 1000\nCMD [\"x\"]\n"
    assert check_dockerfile(text, rsvl_image=False) == []


# ---------------------------------------------------------------- the build context

def dockerignore_patterns() -> list[tuple[bool, str]]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [(line.startswith("!"), line.lstrip("!").strip("/"))
            for line in lines if line.strip() and not line.startswith("#")]


def is_ignored(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a folder covers its contents."""
    ignored = False
    for negated, pattern in patterns:
        regex = (re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
                 .replace(r"\*", "[^/]*").replace(r"\?", "[^/]"))
        if re.fullmatch(f"{regex}(/.*)?", path):
            ignored = not negated
    return ignored


@pytest.mark.parametrize("path,ignored", [
    (".git/HEAD", True), (".venv/bin/python", True), ("data/default/optical/dataset.json", True),
    ("mlflow/mlflow.db", True), ("build/train/x/model.safetensors", True), (".ray_results/run/ckpt", True),
    ("k8s/secrets/postgres.env", True), ("src/rsvl/__pycache__/cli.cpython-311.pyc", True), (".dvc/cache/ab/cd", True),
    ("requirements.lock", False), ("pyproject.toml", False), ("README.md", False), ("src/rsvl/cli.py", False),
    ("src/rsvl/models/configs/rsvl-tiny.json", False), ("pipelines/sar_text/config.yaml", False), ("pipelines/base.yaml", False), ("components/__init__.py", False),
    ("docker/mlflow-server.requirements.txt", False),
])
def test_dockerignore_keeps_local_state_and_secrets_out(path, ignored):
    assert is_ignored(path, dockerignore_patterns()) is ignored


@pytest.mark.parametrize("path", ALL_DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_path_exists_and_is_in_the_context(path):
    patterns = dockerignore_patterns()
    for ins in parse_dockerfile(path.read_text()):
        if ins.keyword != "COPY" or "--from=" in ins.args:
            continue
        for source in [t for t in shlex.split(ins.args) if not t.startswith("--")][:-1]:
            assert (REPO / source).exists(), f"{path.name} line {ins.line}: {source} does not exist"
            assert not is_ignored(source.strip("/"), patterns), \
                f"{path.name} line {ins.line}: .dockerignore drops {source}"


# ---------------------------------------------------------------- what gets installed

def _run_body(path: Path, marker: str) -> str:
    runs = [ins.args for ins in parse_dockerfile(path.read_text()) if ins.keyword == "RUN" and marker in ins.args]
    assert len(runs) == 1, f"expected one RUN containing {marker!r} in {path.name}"
    return runs[0]


def _lock_names(text: str) -> dict[str, str]:
    return {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
            for line in text.splitlines() if "==" in line and not line.startswith("#")}


def test_cpu_image_installs_cpu_torch_and_the_rest_of_the_lock(tmp_path):
    """Run the CPU image's install step with a recording `pip`: torch/torchvision come as +cpu builds at
    the lock's versions, every other pinned package comes from the lock, and no CUDA wheel remains."""
    lock = (REPO / "requirements.lock").read_text()
    (tmp_path / "requirements.lock").write_text(lock)
    log = tmp_path / "pip.log"
    body = _run_body(DOCKER / "Dockerfile.cpu", "download.pytorch.org").replace("/tmp/", f"{tmp_path}/")
    recorder = (f'pip() {{ echo "pip $*" >> "{log}"; for a in "$@"; do '
                f'case "$a" in *.lock) cp "$a" "{tmp_path}/installed.lock";; esac; done; }}\n')
    result = subprocess.run(["sh", "-c", recorder + body], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

    pinned = _lock_names(lock)
    calls = log.read_text().splitlines()
    assert calls[0].split() == ["pip", "install", "--no-deps", "--index-url", "https://download.pytorch.org/whl/cpu",
                                f"torch=={pinned['torch']}+cpu", f"torchvision=={pinned['torchvision']}+cpu"]
    installed = _lock_names((tmp_path / "installed.lock").read_text())
    removed = set(pinned) - set(installed)
    assert removed == {n for n in pinned
                       if n in ("torch", "torchvision", "triton") or n.startswith(("nvidia-", "cuda-"))}
    assert all(installed[n] == pinned[n] for n in installed)
    # nothing left in the image needs what was removed (torch itself is installed as +cpu)
    for name in installed:
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra ==" in requirement:
                continue
            dep = re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")
            assert dep not in removed or dep in ("torch", "torchvision"), \
                f"{name} needs {dep}, which the CPU image drops"


def test_cuda_image_installs_the_whole_lock():
    body = _run_body(DOCKER / "Dockerfile.cuda", "requirements.lock")
    assert body == "pip install -r requirements.lock"
    assert "wget" in _run_body(DOCKER / "Dockerfile.cuda", "apt-get"), "KubeRay's probes of Ray pods call wget"


def test_mlflow_server_image_matches_the_client_and_the_manifest():
    client = _lock_names((REPO / "requirements.lock").read_text())["mlflow"]
    dockerfile = (DOCKER / "Dockerfile.mlflow").read_text()
    base = re.search(r"^ARG MLFLOW_IMAGE=ghcr\.io/mlflow/mlflow:v(\S+)$", dockerfile, re.M).group(1)
    label = re.search(r'org\.opencontainers\.image\.version="([^"]+)"', dockerfile).group(1)
    manifests = list(yaml.safe_load_all((REPO / "k8s" / "base" / "mlflow.yaml").read_text()))
    deployment = next(d for d in manifests if d["kind"] == "Deployment")
    images = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert base == client, "the server's MLflow must be the clients' (requirements.lock)"
    assert images == {f"ghcr.io/rsvl/rsvl-mlflow:{label}"}
    assert label.startswith(f"{client}-")
    extra = [line for line in (DOCKER / "mlflow-server.requirements.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    assert extra and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9.]*", line) for line in extra)
