"""The cluster manifests (k8s/): rendered offline, validated against the Kubernetes and KubeRay
schemas, and checked for the rules a reviewer would: pinned images, no literal credentials,
non-root pods, least-privilege RBAC, and the wiring the cluster profile relies on.

The kustomizations use only ``namespace``, ``resources`` and JSON 6902 ``patches``, which the small
renderer below implements; ``test_renderer_matches_kustomize`` proves it equal to the real
kustomize wherever ``kubectl`` or ``kustomize`` is installed.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import ValidationError as K8sValidationError

from rsvl.mlflow_store import tracking_client

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
BASE = K8S / "base"
OVERLAYS = [BASE, K8S / "overlays" / "local"]
RAYJOB_TEMPLATE = BASE / "rayjob-template.yaml"
RAYJOB_SCHEMA = K8S / "schemas" / "ray.io_rayjobs.json"
NAMESPACE = "rsvl"
# The oldest Kubernetes minor we support and the newest the schemas ship.
K8S_VERSIONS = ("1.30.0", "1.37.0")
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
                  "CustomResourceDefinition", "PriorityClass"}
RENDERED_KEYS = {"apiVersion", "kind", "namespace", "resources", "patches"}
CREDENTIAL_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL|(^|_)USER$|^PGUSER$")


# ---------------------------------------------------------------- a faithful mini-kustomize

def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, parts[-1]


def apply_json6902(doc: dict, ops: list[dict]) -> dict:
    """Apply RFC 6902 ``add``/``replace``/``remove``/``test`` operations to a copy of ``doc``."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parent, key = _parent(doc, _pointer(op["path"]))
        kind = op["op"]
        if isinstance(parent, list):
            index = len(parent) if key == "-" else int(key)
            if kind == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[index]
            elif kind == "test":
                if parent[index] != op["value"]:
                    raise AssertionError(f"patch test failed at {op['path']}: {parent[index]!r} != {op['value']!r}")
            else:
                raise ValueError(f"unsupported JSON patch op {kind!r}")
        else:
            if kind in ("add", "replace"):
                if kind == "replace" and key not in parent:
                    raise KeyError(f"replace of missing path {op['path']}")
                parent[key] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[key]
            elif kind == "test":
                if parent.get(key) != op["value"]:
                    raise AssertionError(f"patch test failed at {op['path']}: {parent.get(key)!r} != {op['value']!r}")
            else:
                raise ValueError(f"unsupported JSON patch op {kind!r}")
    return doc


def render(directory: Path) -> list[dict]:
    """Build a kustomization like ``kustomize build``, for the features our kustomizations use."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - RENDERED_KEYS
    if unsupported:
        raise ValueError(f"{directory}/kustomization.yaml uses {sorted(unsupported)}, which this renderer does not "
                         "implement; extend it (and keep test_renderer_matches_kustomize passing)")
    docs: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            docs += render(path)
        else:
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        if set(target) - {"kind", "name"} or set(patch) - {"path", "target"}:
            raise ValueError(f"patch {patch} uses fields this renderer does not implement")
        ops = yaml.safe_load((directory / patch["path"]).read_text())
        hits = [i for i, doc in enumerate(docs)
                if doc["kind"] == target["kind"] and doc["metadata"]["name"] == target["name"]]
        if not hits:
            raise ValueError(f"patch {patch['path']} matches no resource {target}")
        for i in hits:
            docs[i] = apply_json6902(docs[i], ops)
    namespace = kustomization.get("namespace")
    if namespace:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace
    return docs


def _key(doc: dict) -> tuple[str, str, str, str]:
    meta = doc["metadata"]
    return doc["apiVersion"], doc["kind"], meta.get("namespace", ""), meta["name"]


@pytest.fixture(scope="module", params=OVERLAYS, ids=lambda p: p.relative_to(K8S).as_posix())
def rendered(request) -> list[dict]:
    """Every resource of one kustomization (base or overlay), rendered."""
    return render(request.param)


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return render(BASE)


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.safe_load(RAYJOB_TEMPLATE.read_text())


def only(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    """``(where, pod spec)`` of every workload and every RayJob pod template in ``docs``."""
    specs = []
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            specs.append((where, doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "RayJob":
            cluster = doc["spec"]["rayClusterSpec"]
            specs.append((f"{where} head", cluster["headGroupSpec"]["template"]["spec"]))
            specs += [(f"{where} {group['groupName']}", group["template"]["spec"])
                      for group in cluster["workerGroupSpecs"]]
            if "submitterPodTemplate" in doc["spec"]:
                specs.append((f"{where} submitter", doc["spec"]["submitterPodTemplate"]["spec"]))
    return specs


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


# ---------------------------------------------------------------- rendering

def _kustomize_command(directory: Path) -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build", str(directory)]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", str(directory)]
    return None


@pytest.mark.parametrize("directory", OVERLAYS, ids=lambda p: p.relative_to(K8S).as_posix())
def test_renderer_matches_kustomize(directory):
    command = _kustomize_command(directory)
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed: the renderer cannot be compared to the real one")
    built = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    theirs = {_key(d): d for d in yaml.safe_load_all(built.stdout) if d}
    ours = {_key(d): d for d in render(directory)}
    assert sorted(ours) == sorted(theirs)
    for key, doc in ours.items():
        assert doc == theirs[key], f"{key} renders differently from {' '.join(command[:2])}"


def test_renderer_refuses_what_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(ValueError, match="commonLabels"):
        render(tmp_path)


def test_json6902_test_op_guards_the_overlay():
    doc = {"spec": {"args": ["--workers=2"]}}
    assert apply_json6902(doc, [{"op": "test", "path": "/spec/args/0", "value": "--workers=2"},
                                {"op": "replace", "path": "/spec/args/0", "value": "--workers=1"}]) == \
        {"spec": {"args": ["--workers=1"]}}
    with pytest.raises(AssertionError, match="patch test failed"):
        apply_json6902(doc, [{"op": "test", "path": "/spec/args/0", "value": "--workers=3"}])


# ---------------------------------------------------------------- schemas

@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_resource_is_valid_kubernetes(rendered, version):
    errors = []
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except K8sValidationError as err:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {err}")
    assert not errors, "\n".join(errors)


def test_validator_rejects_unknown_fields_and_wrong_types(base):
    good = only(base, "Deployment", "mlflow")
    kubernetes_validate.validate(good, K8S_VERSIONS[0], strict=True)

    typo = copy.deepcopy(good)
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(K8sValidationError, match="imagePullPolicyy"):
        kubernetes_validate.validate(typo, K8S_VERSIONS[0], strict=True)
    # without strict mode the typo would slip through: that is why the suite validates strictly
    kubernetes_validate.validate(typo, K8S_VERSIONS[0], strict=False)

    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["replicas"] = "one"
    with pytest.raises(K8sValidationError, match="one"):
        kubernetes_validate.validate(wrong_type, K8S_VERSIONS[0], strict=True)


def strict_crd_schema(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that lists properties
    (what the API server does with ``fieldValidation=Strict``), except where unknown fields are allowed."""
    if isinstance(schema, list):
        return [strict_crd_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict_crd_schema(value) for key, value in schema.items()}
    if ("properties" in result and "additionalProperties" not in result
            and not result.get("x-kubernetes-preserve-unknown-fields")):
        result["additionalProperties"] = False
    return result


@pytest.fixture(scope="module")
def rayjob_validator() -> jsonschema.Validator:
    if not RAYJOB_SCHEMA.is_file():
        pytest.skip(f"{RAYJOB_SCHEMA.relative_to(REPO)} is absent: "
                    "the RayJob template cannot be checked against the CRD")
    schema = json.loads(RAYJOB_SCHEMA.read_text())
    if schema.get("kind") == "CustomResourceDefinition":  # a whole CRD rather than its v1 schema
        schema = next(v for v in schema["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    return jsonschema.Draft202012Validator(strict_crd_schema(schema))


def test_rayjob_template_is_what_the_code_builds(repo_root):
    from rsvl.cluster.template import render_rayjob_template

    # Stale template: `make k8s-template` rewrites it from rsvl.cluster.rayjob.
    assert RAYJOB_TEMPLATE.read_text() == render_rayjob_template(repo_root)


def test_rayjob_template_check_mode_reports_a_stale_file(tmp_path, repo_root, capsys):
    from rsvl.cluster.template import TEMPLATE_PATH, main

    (tmp_path / "pipelines").symlink_to(repo_root / "pipelines")
    (tmp_path / TEMPLATE_PATH).parent.mkdir(parents=True)
    (tmp_path / TEMPLATE_PATH).write_text(RAYJOB_TEMPLATE.read_text().replace("ttlSecondsAfterFinished: 300", "ttlSecondsAfterFinished: 600"))
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["--root", str(tmp_path)]) == 0 and main(["--check", "--root", str(tmp_path)]) == 0
    assert (tmp_path / TEMPLATE_PATH).read_text() == RAYJOB_TEMPLATE.read_text()


def test_rayjob_template_matches_the_kuberay_crd(template, rayjob_validator):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in rayjob_validator.iter_errors(template)]
    assert not errors, "\n".join(errors)


def test_crd_validation_rejects_typos_and_wrong_types(template, rayjob_validator):
    typo = copy.deepcopy(template)
    typo["spec"]["shutdownAfterJobFinish"] = typo["spec"].pop("shutdownAfterJobFinishes")
    assert not rayjob_validator.is_valid(typo)
    wrong_type = copy.deepcopy(template)
    wrong_type["spec"]["activeDeadlineSeconds"] = "6h"
    assert not rayjob_validator.is_valid(wrong_type)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_rayjob_pod_templates_are_valid_pod_templates(template, version):
    cluster = template["spec"]["rayClusterSpec"]
    pod_templates = [cluster["headGroupSpec"]["template"], template["spec"]["submitterPodTemplate"]]
    pod_templates += [group["template"] for group in cluster["workerGroupSpecs"]]
    for pod in pod_templates:
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate",
                                      "metadata": {"name": "check", "namespace": NAMESPACE}, "template": pod},
                                     version, strict=True)


# ---------------------------------------------------------------- namespace, secrets, images

def test_namespace_is_applied_everywhere(rendered):
    assert only(rendered, "Namespace", NAMESPACE)
    for doc in rendered:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']}"
        for subject in doc.get("subjects", []):
            assert subject.get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']} subject"


def test_no_secret_is_committed(rendered):
    secrets = [d for d in rendered if d["kind"] == "Secret"]
    assert not secrets, "Secrets are created from k8s/secrets/*.env, not committed"
    for example in (K8S / "secrets").glob("*.env.example"):
        for line in example.read_text().splitlines():
            name, _, value = line.partition("=")
            if not line.startswith("#") and re.search("PASSWORD|SECRET", name):
                assert value == "CHANGE_ME", f"{example.name}: {name} must be the placeholder CHANGE_ME"


def test_real_secret_files_are_git_ignored():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for name in ("postgres.env", "minio.env", "mlflow-s3.env"):
        ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", f"k8s/secrets/{name}"])
        assert ignored.returncode == 0, f"k8s/secrets/{name} would be committable"
    kept = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "k8s/secrets/postgres.env.example"])
    assert kept.returncode == 1


def literal_credentials(spec: dict) -> list[str]:
    """Env entries of a pod spec that carry a credential as a literal, or a URI with a password."""
    problems = []
    for container in containers(spec):
        for item in container.get("env", []):
            value = str(item.get("value", ""))
            if CREDENTIAL_NAME.search(item["name"]) and "valueFrom" not in item:
                problems.append(f"{container['name']}: {item['name']} is a literal, not a secretKeyRef")
            if re.search(r"://[^/@\s]+:[^/@\s]+@", value):
                problems.append(f"{container['name']}: {item['name']} holds a URI with a password")
        for arg in container.get("command", []) + container.get("args", []):
            if re.search(r"://[^/@\s]+:[^/@\s]+@", arg) or re.search(r"password=", arg, re.I):
                problems.append(f"{container['name']}: argument {arg!r} holds a credential")
    return problems


def test_credentials_reach_pods_only_through_secret_refs(base, template):
    for where, spec in pod_specs(base + [template]):
        assert not literal_credentials(spec), where


def test_the_credential_check_bites():
    bad = {"containers": [{"name": "c", "env": [{"name": "POSTGRES_PASSWORD", "value": "hunter2"},
                                                 {"name": "DB", "value": "postgresql://u:p@db/x"}],
                           "args": ["--backend-store-uri=postgresql://u:p@db/x"]}]}
    assert len(literal_credentials(bad)) == 3


def secret_refs(docs: list[dict]) -> set[tuple[str, str]]:
    refs = set()
    for _, spec in pod_specs(docs):
        for container in containers(spec):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    return refs


def test_every_secret_used_is_documented_by_an_example(base, template):
    documented = set()
    for example in (K8S / "secrets").glob("*.env.example"):
        secret = "rsvl-" + example.name.removesuffix(".env.example")
        documented |= {(secret, line.partition("=")[0]) for line in example.read_text().splitlines()
                       if line and not line.startswith("#")}
    assert secret_refs(base + [template]) == documented
    readme = (K8S / "README.md").read_text()
    for secret in {name for name, _ in documented}:
        assert secret in readme, f"k8s/README.md does not say how to create {secret}"


def test_documented_secret_commands_create_what_the_pods_read(base, template):
    """`kubectl create secret generic rsvl-<name> --from-env-file=...` (k8s/README.md) on each example
    yields a valid Secret holding exactly the keys the manifests reference."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    wanted = secret_refs(base + [template])
    for example in sorted((K8S / "secrets").glob("*.env.example")):
        name = "rsvl-" + example.name.removesuffix(".env.example")
        created = subprocess.run(["kubectl", "create", "secret", "generic", name, "-n", NAMESPACE,
                                  f"--from-env-file={example}", "--dry-run=client", "-o", "json"],
                                 capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stderr
        secret = json.loads(created.stdout)
        kubernetes_validate.validate(secret, K8S_VERSIONS[0], strict=True)
        assert set(secret["data"]) == {key for secret_name, key in wanted if secret_name == name}, name


def image_is_pinned(image: str) -> bool:
    """A digest, or an explicit tag other than ``latest``."""
    if "@" in image:
        return bool(re.search(r"@sha256:[0-9a-f]{64}$", image))
    last = image.rsplit("/", 1)[-1]
    name, sep, tag = last.partition(":")
    return bool(sep and name and tag and tag != "latest")


@pytest.mark.parametrize("image,pinned", [
    ("postgres", False), ("postgres:latest", False), ("registry:5000/postgres", False),
    ("registry:5000/postgres:16.9", True), ("x/y@sha256:" + "a" * 64, True), ("x/y@sha256:abc", False),
])
def test_image_pinning_rule(image, pinned):
    assert image_is_pinned(image) is pinned


def test_every_image_is_pinned(rendered, template):
    for where, spec in pod_specs(rendered + [template]):
        for container in containers(spec):
            assert image_is_pinned(container["image"]), f"{where}: {container['image']}"


# ---------------------------------------------------------------- pod security

def restricted_violations(spec: dict) -> list[str]:
    """What keeps a pod spec from the Pod Security "restricted" profile (the parts we control)."""
    problems = []
    pod = spec.get("securityContext", {})
    if pod.get("runAsNonRoot") is not True:
        problems.append("pod: runAsNonRoot is not true")
    if pod.get("runAsUser", 1) == 0:
        problems.append("pod: runAsUser is 0")
    if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod: seccompProfile is not RuntimeDefault")
    for container in containers(spec):
        context = container.get("securityContext", {})
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{container['name']}: allowPrivilegeEscalation is not false")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            problems.append(f"{container['name']}: capabilities are not dropped")
        if context.get("privileged") or context.get("runAsUser") == 0:
            problems.append(f"{container['name']}: privileged or root")
    return problems


def test_our_pods_are_restricted_and_non_root(rendered, template):
    specs = pod_specs(rendered + [template])
    assert len(specs) >= 7
    for where, spec in specs:
        assert not restricted_violations(spec), where
        assert spec.get("automountServiceAccountToken") is False, f"{where}: mounts an API token it does not need"


def test_the_pod_security_check_bites():
    root = {"securityContext": {"runAsUser": 0}, "containers": [{"name": "c", "securityContext": {"privileged": True}}]}
    assert len(restricted_violations(root)) == 6


# ---------------------------------------------------------------- RBAC

def allows(role: dict, group: str, resource: str, verb: str) -> bool:
    return any((group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", []))
               and (resource in rule.get("resources", []) or "*" in rule.get("resources", []))
               and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", []))
               for rule in role["rules"])


def test_runner_may_drive_rayjobs_and_nothing_more(base):
    role = only(base, "Role", "rsvl-pipeline-runner")
    for verb in ("create", "get", "list", "watch", "delete"):
        assert allows(role, "ray.io", "rayjobs", verb), verb
    for verb in ("get", "list", "watch"):
        assert allows(role, "", "pods", verb), verb
    assert allows(role, "", "pods/log", "get")
    for group, resource, verb in [("", "secrets", "get"), ("", "pods/exec", "create"), ("ray.io", "rayjobs", "update"),
                                  ("", "pods", "delete"), ("rbac.authorization.k8s.io", "roles", "create")]:
        assert not allows(role, group, resource, verb), f"{verb} {resource}"
    fields = ("apiGroups", "resources", "verbs")
    assert not any("*" in rule.get(field, []) for rule in role["rules"] for field in fields)

    binding = only(base, "RoleBinding", "rsvl-pipeline-runner")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "rsvl-pipeline-runner"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rsvl-pipeline-runner", "namespace": NAMESPACE}]
    only(base, "ServiceAccount", "rsvl-pipeline-runner")
    assert only(base, "ServiceAccount", "rsvl-mlflow")["automountServiceAccountToken"] is False


# ---------------------------------------------------------------- wiring

def _labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_services_select_their_pods_and_named_ports(rendered):
    workloads = [d for d in rendered if d["kind"] in ("Deployment", "StatefulSet")]
    for service in [d for d in rendered if d["kind"] == "Service"]:
        targets = [w for w in workloads
                   if _labels_match(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])]
        assert len(targets) == 1, service["metadata"]["name"]
        ports = {p["name"] for c in targets[0]["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{service['metadata']['name']}: {port['targetPort']}"
    for workload in workloads:
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert _labels_match(workload["spec"]["selector"]["matchLabels"], pod_labels)
        if workload["kind"] == "StatefulSet":
            only(rendered, "Service", workload["spec"]["serviceName"])


def test_network_policies_admit_mlflow_to_its_stores(rendered):
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
            for d in rendered if d["kind"] in ("Deployment", "StatefulSet", "Job")}
    for store, port in (("postgres", 5432), ("minio", 9000)):
        policies = [p for p in rendered if p["kind"] == "NetworkPolicy"
                    and _labels_match(p["spec"]["podSelector"]["matchLabels"], pods[store])]
        assert len(policies) == 1, store
        peers = [peer["podSelector"]["matchLabels"] for rule in policies[0]["spec"]["ingress"] for peer in rule["from"]]
        assert any(_labels_match(peer, pods["mlflow"]) for peer in peers), store
        assert [p["port"] for rule in policies[0]["spec"]["ingress"] for p in rule["ports"]] == [port]
    minio_peers = [peer["podSelector"]["matchLabels"] for p in rendered if p["kind"] == "NetworkPolicy"
                   for rule in p["spec"]["ingress"] for peer in rule["from"]
                   if _labels_match(p["spec"]["podSelector"]["matchLabels"], pods["minio"])]
    assert any(_labels_match(peer, pods["minio-bootstrap"]) for peer in minio_peers)


def test_secret_reading_workloads_find_their_stores(base):
    mlflow = only(base, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in mlflow["env"]}
    assert env["PGUSER"]["valueFrom"]["secretKeyRef"] == {"name": "rsvl-postgres", "key": "POSTGRES_USER"}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "rsvl-postgres", "key": "POSTGRES_PASSWORD"}
    host = env["MLFLOW_S3_ENDPOINT_URL"]["value"].split("//")[1].split(":")[0]
    only(base, "Service", host)
    backend = next(a for a in mlflow["args"] if a.startswith("--backend-store-uri="))
    assert backend.split("//")[1].split(":")[0] == "postgres" and "@" not in backend
    only(base, "Service", "postgres")


def test_minio_bootstrap_policy_and_script(base):
    policy = json.loads(only(base, "ConfigMap", "minio-mlflow-policy")["data"]["rsvl-mlflow.json"])
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {"arn:aws:s3:::mlflow", "arn:aws:s3:::mlflow/*"}
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert not any("*" in a or a.startswith("admin:") or a in ("s3:CreateBucket", "s3:DeleteBucket") for a in actions)
    script = only(base, "Job", "minio-bootstrap")["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    assert "mc mb --ignore-existing store/mlflow" in script


def test_shared_volume_serves_the_cluster_profile(base, template):
    from rsvl.config import load_config

    cfg = load_config(REPO / "pipelines" / "sar_text" / "config.yaml", profile="cluster")
    shared = only(base, "PersistentVolumeClaim", "rsvl-shared")
    assert shared["spec"]["accessModes"] == ["ReadWriteMany"]
    assert only(base, "PersistentVolumeClaim", "rsvl-data")["spec"]["accessModes"] == ["ReadWriteMany"]
    for where, spec in pod_specs([template])[:-1]:  # head and workers; the submitter needs no volume
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
        claim_at = {path: volumes[m["name"]].get("persistentVolumeClaim", {}).get("claimName")
                    for path, m in mounts.items()}
        storage_mount = next(path for path in claim_at if cfg.train.storage_path.startswith(path + "/"))
        assert claim_at[storage_mount] == "rsvl-shared", where
        assert not mounts[storage_mount].get("readOnly"), where
        data_mount = next(path for path in claim_at if cfg.data.path.startswith(path + "/"))
        assert claim_at[data_mount] == "rsvl-data" and mounts[data_mount]["readOnly"], where


def test_tracking_uri_of_the_cluster_profile_is_the_mlflow_service(base, template):
    from rsvl.config import load_config

    cfg = load_config(REPO / "pipelines" / "sar_text" / "config.yaml", profile="cluster")
    service = only(base, "Service", "mlflow")
    port = service["spec"]["ports"][0]["port"]
    expected = f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local:{port}"
    assert cfg.mlflow.tracking_uri == expected
    for where, spec in pod_specs([template])[:-1]:
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        assert env["MLFLOW_TRACKING_URI"] == expected, where
    args = only(base, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--port={port}" in args


# ---------------------------------------------------------------- the RayJob template

def test_rayjob_template_is_not_applied_with_the_base(base):
    assert not [d for d in base if d["kind"] == "RayJob"]
    assert "rayjob-template.yaml" not in (BASE / "kustomization.yaml").read_text().split("resources:")[1]


def test_rayjob_template_frees_gpus_and_runs_rsvl_train(template):
    from importlib import metadata

    spec = template["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] >= 0 and spec["activeDeadlineSeconds"] > 0
    assert spec["rayClusterSpec"]["rayVersion"] == metadata.version("ray")
    for group in spec["rayClusterSpec"]["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) == 1
        assert group["replicas"] == group["minReplicas"] == group["maxReplicas"]
        tolerated = {t["key"] for t in group["template"]["spec"].get("tolerations", [])}
        assert "nvidia.com/gpu" in tolerated
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"].get("limits", {})

    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["rsvl", "train"]
    assert argv[argv.index("--profile") + 1] == "cluster"
    # the config path is relative to the image's WORKDIR (/app), where the Dockerfiles copy pipelines/
    assert (REPO / argv[argv.index("--config") + 1]).is_file()
    dockerfile = (REPO / "docker" / "Dockerfile.cuda").read_text()
    assert "WORKDIR /app" in dockerfile and "COPY pipelines ./pipelines" in dockerfile
    images = {c["image"] for _, s in pod_specs([template]) for c in containers(s)}
    assert images == {"ghcr.io/rsvl/rsvl-cuda:set-by-builder"}, "one placeholder, replaced everywhere at once"


# ---------------------------------------------------------------- overlay

def test_local_overlay_shrinks_the_base():
    base, local = render(BASE), render(K8S / "overlays" / "local")
    for claim in ("rsvl-shared", "rsvl-data"):
        assert only(local, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    mlflow_base = only(base, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    mlflow_local = only(local, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert "--workers=1" in mlflow_local["args"] and "--workers=2" in mlflow_base["args"]
    assert [a for a in mlflow_local["args"] if not a.startswith("--workers")] == \
        [a for a in mlflow_base["args"] if not a.startswith("--workers")]


# ---------------------------------------------------------------- the MLflow server's real behaviour

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, host: str) -> int:
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_allowed_hosts_admit_the_cluster_names_only(base):
    """MLflow's own host check, fed the Deployment's --allowed-hosts (the fast half of the test below)."""
    from mlflow.server.security_utils import is_allowed_host_header

    args = only(base, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]["args"]
    allowed = next(a for a in args if a.startswith("--allowed-hosts=")).partition("=")[2].split(",")
    service = only(base, "Service", "mlflow")
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    port = service["spec"]["ports"][0]["port"]
    for host in (name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"):
        assert is_allowed_host_header(allowed, host), host
        assert is_allowed_host_header(allowed, f"{host}:{port}"), host
    assert is_allowed_host_header(allowed, "localhost:5000")
    for host in ("attacker.example.com", "mlflow.evil.com", "mlflow.rsvl.svc.cluster.local.evil.com:5000"):
        assert not is_allowed_host_header(allowed, host), host


@pytest.mark.slow
def test_mlflow_server_answers_the_cluster_hostname_only(base, tmp_path):
    """Run the Deployment's own command line (stores swapped for local ones): MLflow's DNS-rebinding
    guard must admit the Service's in-cluster names and refuse others."""
    container = only(base, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    port = _free_port()
    replaced = {
        "--host": "127.0.0.1", "--port": str(port), "--workers": "1",
        "--backend-store-uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--artifacts-destination": (tmp_path / "artifacts").as_uri(),
    }
    args = []
    for arg in container["args"]:
        flag, sep, _ = arg.partition("=")
        args.append(f"{flag}={replaced[flag]}" if sep and flag in replaced else arg)
    assert container["command"] == ["mlflow", "server"]
    command = [sys.executable, "-m", "mlflow", "server", *args]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        # called at once, while the server still starts: the store's retry policy (backoff) waits for it
        assert [e.name for e in tracking_client(url).search_experiments()] == ["Default"]
        search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
        for host in ("mlflow.rsvl.svc.cluster.local:5000", "mlflow:5000", "mlflow.rsvl:5000", "localhost:5000"):
            assert _get(search, host) == 200, host
        assert _get(search, "attacker.example.com") == 403
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_search_service_serves_the_newest_index_read_only_from_the_shared_volume(base):
    from typer.main import get_command

    from rsvl.cli import app

    spec = only(base, "Deployment", "search")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["command"] == ["rsvl", "serve"] and container["securityContext"]["readOnlyRootFilesystem"] is True
    args = dict(arg[2:].split("=", 1) for arg in container["args"])
    assert args["index"].startswith("/mnt/rsvl-shared/search/") and args["host"] == "0.0.0.0"
    serve = get_command(app).commands["serve"]
    assert set(args) <= {opt.lstrip("-") for param in serve.params for opt in param.opts}  # real options only
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/mnt/rsvl-shared"]["readOnly"] is True and "/tmp" in mounts
    assert {p["containerPort"] for p in container["ports"]} == {int(args["port"])}
    assert all(probe["httpGet"]["path"] == "/healthz" for key, probe in container.items() if key.endswith("Probe"))
    assert only(base, "ServiceAccount", "rsvl-search")["automountServiceAccountToken"] is False
