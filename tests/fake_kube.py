"""A Kubernetes API server on loopback with the RayJob endpoints only, for the kuberay backend's tests.

POSTed RayJobs are validated with the strict CRD schema (as ``fieldValidation=Strict`` does) and
their status follows a script; :class:`ExecutingKube` instead runs the RayJob's entrypoint as the
head pod would and reports ``RUNNING`` until it exits, then ``SUCCEEDED`` or ``FAILED``.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from rayjob_schema import validate_rayjob
from rsvl.errors import ConfigError


class FakeKube:
    """The RayJob endpoints of a Kubernetes API server, with scripted status transitions."""

    PREFIX = re.compile(r"^/apis/ray\.io/v1/namespaces/([^/]+)/rayjobs(?:/([^/]+))?$")

    def __init__(self, schema):
        self.schema = schema
        self.objects: dict[tuple[str, str], dict] = {}
        self.scripts: dict[str, list[dict]] = {}
        self.default_script: list[dict] = [{}]
        self.requests: list[tuple[str, str, dict]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method):
                url = urlparse(self.path)
                match = FakeKube.PREFIX.match(url.path)
                with fake.lock:
                    fake.requests.append((method, url.path, parse_qs(url.query)))
                    if not match:
                        return self._reply(404, status_body(404, "NotFound", f"no route {url.path}"))
                    namespace, name = match.groups()
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(length)) if length else None
                    return self._reply(*fake.handle(method, namespace, name, body))

            def do_POST(self):
                self._route("POST")

            def do_GET(self):
                self._route("GET")

            def do_DELETE(self):
                self._route("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def handle(self, method, namespace, name, body):
        if method == "POST":
            try:
                validate_rayjob(body, self.schema)
            except ConfigError as err:
                return 422, status_body(422, "Invalid", str(err))
            key = (namespace, body["metadata"]["name"])
            if key in self.objects:
                return 409, status_body(409, "AlreadyExists", f'rayjobs.ray.io "{key[1]}" already exists')
            self.objects[key] = {"body": body, "script": list(self.scripts.get(key[1], self.default_script))}
            return 201, body
        key = (namespace, name)
        if key not in self.objects:
            return 404, status_body(404, "NotFound", f'rayjobs.ray.io "{name}" not found')
        if method == "DELETE":
            del self.objects[key]
            return 200, status_body(200, "Success", "deleted")
        stored = self.objects[key]
        status = stored["script"].pop(0) if len(stored["script"]) > 1 else stored["script"][0]
        return 200, {**stored["body"], "status": status}

    def calls(self, method):
        return [path for m, path, _ in self.requests if m == method]


def status_body(code, reason, message):
    """A Kubernetes ``Status`` error body."""
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message}


class ExecutingKube(FakeKube):
    """Runs each created RayJob's ``spec.entrypoint`` locally (cwd and env given) and reports its state."""

    def __init__(self, schema, cwd, env):
        super().__init__(schema)
        self.cwd, self.env = cwd, env
        self.processes: dict[str, subprocess.Popen] = {}

    def handle(self, method, namespace, name, body):
        if method == "POST":
            code, reply = super().handle(method, namespace, name, body)
            if code == 201:
                log = open(f"{self.cwd}/{body['metadata']['name']}.log", "w")  # noqa: SIM115 - closed with the process
                self.processes[body["metadata"]["name"]] = subprocess.Popen(
                    shlex.split(body["spec"]["entrypoint"]), cwd=self.cwd, env=self.env, stdout=log,
                    stderr=subprocess.STDOUT)
            return code, reply
        if method == "GET" and (namespace, name) in self.objects:
            process = self.processes[name]
            code = process.poll()
            job = "RUNNING" if code is None else ("SUCCEEDED" if code == 0 else "FAILED")
            deployment = "Running" if code is None else ("Complete" if code == 0 else "Failed")
            status = {"jobDeploymentStatus": deployment, "jobStatus": job}
            if code:
                status["message"] = f"entrypoint exited with {code}"
            return 200, {**self.objects[(namespace, name)]["body"], "status": status}
        return super().handle(method, namespace, name, body)


@contextlib.contextmanager
def serving(fake: FakeKube):
    """Serve ``fake`` on loopback and yield a real ``kubernetes`` API client pointed at it; stop both after."""
    from kubernetes import client

    fake.thread.start()
    configuration = client.Configuration()
    configuration.host = fake.host
    api_client = client.ApiClient(configuration)
    try:
        yield api_client
    finally:
        api_client.close()
        fake.server.shutdown()
        fake.server.server_close()
