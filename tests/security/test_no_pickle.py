"""No pickle of anything a user supplies: a static scan of the shipped code, and a malicious pickle refused.

The scan reads the syntax tree of every module under ``src/``, ``pipelines/`` and ``components/``
(not text, so comments and docstrings do not count) and fails on each way Python code can
unpickle: the pickle family of modules, ``torch.load`` without ``weights_only=True``,
``numpy.load(allow_pickle=True)``, an unsafe YAML loader, ``pandas.read_pickle``, and an MLflow
pyfunc logged as an object (a pickled ``python_model``) instead of as code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from rsvl.errors import ModelError
from rsvl.models.weights import read_state_dict

REPO = Path(__file__).resolve().parents[2]
SHIPPED = [path for folder in ("src", "pipelines", "components") for path in sorted((REPO / folder).rglob("*.py"))
           if "tests" not in path.relative_to(REPO).parts]
PICKLING_MODULES = {"pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal", "_pickle"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}


def _name(node: ast.AST) -> str:
    """Dotted name of a call's function (``torch.load``), or ``""``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _name(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def unpickling_sites(source: str, where: str) -> list[str]:
    """Every place in ``source`` that can unpickle, as ``where:line: what``.

    Args:
        source: Python source text.
        where: The file name used in the findings.

    Returns:
        The findings (empty for safe code).
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found += [f"{line}: imports {name}" for name in names if name.split(".")[0] in PICKLING_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        if name.endswith("torch.load"):
            flag = _keyword(node, "weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(f"{line}: torch.load without weights_only=True")
        if name in ("np.load", "numpy.load"):
            flag = _keyword(node, "allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                found.append(f"{line}: numpy.load with allow_pickle not False")
        if name in ("yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all"):
            found.append(f"{line}: {name}")
        if name == "yaml.load":
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _name(loader).split(".")[-1] in {"Loader", "UnsafeLoader", "FullLoader"}:
                found.append(f"{line}: yaml.load with an unsafe or default loader")
        if name.endswith("read_pickle"):
            found.append(f"{line}: {name}")
        model = _keyword(node, "python_model")
        if model is not None and not (isinstance(model, ast.Constant) and isinstance(model.value, str)) \
                and not (isinstance(model, ast.Call) and _name(model.func) == "str"):
            found.append(f"{line}: {name} logs python_model as an object (pickled), not as a code path")
    return found


def test_the_scan_finds_each_way_to_unpickle():
    bad = ("import pickle\nfrom cloudpickle import loads\nimport torch, numpy as np, yaml, pandas as pd, mlflow\n"
           "torch.load('m.pt')\ntorch.load('m.pt', weights_only=False)\nnp.load('a.npy', allow_pickle=True)\n"
           "yaml.load(text, Loader=yaml.Loader)\nyaml.unsafe_load(text)\npd.read_pickle('t.pkl')\n"
           "mlflow.pyfunc.log_model(name='m', python_model=Model())\n")
    found = unpickling_sites(bad, "bad.py")
    assert [f.split(": ", 1)[1] for f in found] == [
        "imports pickle", "imports cloudpickle", "torch.load without weights_only=True",
        "torch.load without weights_only=True", "numpy.load with allow_pickle not False",
        "yaml.load with an unsafe or default loader", "yaml.unsafe_load", "pd.read_pickle",
        "mlflow.pyfunc.log_model logs python_model as an object (pickled), not as a code path"]
    safe = ("import torch, numpy as np, yaml\ntorch.load(p, map_location='cpu', weights_only=True)\n"
            "np.load(p, allow_pickle=False)\nyaml.load(t, Loader=_ConfigLoader)\nyaml.safe_load(t)\n"
            "log_model(name='m', python_model=str(PYFUNC_FILE))\n")
    assert unpickling_sites(safe, "safe.py") == []


def test_no_shipped_module_can_unpickle():
    assert len(SHIPPED) > 100
    found = [f for path in SHIPPED for f in unpickling_sites(path.read_text(), str(path.relative_to(REPO)))]
    assert found == []


class _Payload:
    """Unpickling this runs ``Path(marker).touch()``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_a_malicious_pickle_given_as_weights_is_refused_and_never_runs(tmp_path, suffix):
    marker, weights = tmp_path / "pwned", tmp_path / f"weights{suffix}"
    torch.save({"layer.weight": torch.zeros(2), "hook": _Payload(marker)}, weights)
    with open(weights, "rb") as handle:  # the file really is a pickle that runs code when loaded unsafely
        assert b"touch" in handle.read()
    with pytest.raises(ModelError, match=rf"weights{suffix}: refused, the file holds pickled Python objects besides tensors \(getattr\)"):
        read_state_dict(weights)
    assert not marker.exists()
