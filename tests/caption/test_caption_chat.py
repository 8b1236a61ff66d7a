"""The chat rewriter against a real HTTP server on loopback that answers canned completions."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rsvl.caption import CaptionConfig, ChatEndpoint, ChatRewriter, RewriterError, Scene, load_prompt, narrate
from rsvl.caption.rewrite import build_rewriter


class _Stub(BaseHTTPRequestHandler):
    requests: list[dict] = []
    reply: str = "Three ships are docked at the pier."
    replies: list[str] | None = None
    """When set, a request asking for ``n`` choices gets the first ``n`` of these."""
    status: int = 200

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if self.status != 200:
            payload = b'{"error": "model overloaded"}'
        else:
            contents = self.replies[:body.get("n", 1)] if self.replies else [self.reply]
            payload = json.dumps({"id": "cmpl-1", "object": "chat.completion", "choices": [
                {"index": i, "message": {"role": "assistant", "content": f'"{text}"\n'}}
                for i, text in enumerate(contents)]}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def stub():
    handler = type("Handler", (_Stub,), {"requests": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_chat_rewriter_sends_prompt_examples_and_model(stub):
    handler, base = stub
    rewriter = ChatRewriter(base + "/", "sar-writer-7b", api_key="token-1")
    assert rewriter.rewrite("Three white ships at the grey pier.") == handler.reply
    (request,) = handler.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer token-1"
    body = request["body"]
    assert body["model"] == "sar-writer-7b"
    assert (body["temperature"], body["n"], "seed" in body) == (0, 1, False)
    prompt = load_prompt()
    messages = body["messages"]
    assert messages[0] == {"role": "system", "content": prompt.system}
    for optical, sar in prompt.examples:
        assert {"role": "user", "content": optical} in messages
        assert {"role": "assistant", "content": sar} in messages
    assert messages[-1] == {"role": "user", "content": "Three white ships at the grey pier."}


def test_chat_rewriter_labels_optical_captions_with_the_model(stub):
    handler, base = stub
    config = CaptionConfig(a2c_captions=0, sa2c_captions=0, rewriter="chat",
                           chat=ChatEndpoint(base_url=base, model="sar-writer-7b"))
    scene = Scene("s", 90, 90, [{"x_min": 1.0, "y_min": 1.0, "x_max": 9.0, "y_max": 5.0, "label": "ship"}] * 3)
    result = narrate(scene, config, rewriter=build_rewriter(config.rewriter, config.chat),
                     optical_captions=["Three white ships at the grey pier."])
    assert [(c.text, c.route, c.rewriter) for c in result.accepted] == [
        (handler.reply, "optical", "chat:sar-writer-7b")]


def test_chat_reply_that_contradicts_the_boxes_is_rejected(stub):
    handler, base = stub
    handler.reply = "Five ships are docked at the pier."
    scene = Scene("s", 90, 90, [{"x_min": 1.0, "y_min": 1.0, "x_max": 9.0, "y_max": 5.0, "label": "ship"}] * 3)
    result = narrate(scene, CaptionConfig(a2c_captions=0, sa2c_captions=0),
                     rewriter=ChatRewriter(base, "m"), optical_captions=["Three ships at the pier."])
    assert not result.accepted
    assert [(r.rule, r.rewriter) for r in result.rejected] == [("count_mismatch", "chat:m")]


def test_http_error_names_the_endpoint(stub):
    handler, base = stub
    handler.status = 503
    with pytest.raises(RewriterError, match=rf"{base}/v1/chat/completions answered HTTP 503.*overloaded"):
        ChatRewriter(base, "m").rewrite("A ship.")


def test_empty_reply_names_the_endpoint(stub):
    handler, base = stub
    handler.reply = ""
    with pytest.raises(RewriterError, match=rf"{base}/v1/chat/completions answered an empty completion"):
        ChatRewriter(base, "m").rewrite("A ship.")


def test_unreachable_endpoint_names_the_url():
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RewriterError, match=rf"http://127.0.0.1:{port}/v1/chat/completions is unreachable"):
        ChatRewriter(f"http://127.0.0.1:{port}", "m", timeout_s=2).rewrite("A ship.")


def test_chat_config_needs_an_endpoint():
    with pytest.raises(ValueError, match="needs a 'chat' section"):
        CaptionConfig(rewriter="chat")


def test_diversify_samples_variants_in_one_request_and_drops_repeats(stub):
    handler, base = stub
    handler.replies = ["Three ships lie along the quay.", "three ships lie along the quay", "Three vessels are moored."]
    rewriter = ChatRewriter(base, "m", temperature=0.7, variants=3)
    assert rewriter.diversify("Three ships moored along the quay.", seed=5) == [
        "Three ships lie along the quay.", "Three vessels are moored."]
    ((_, body),) = [(r["path"], r["body"]) for r in handler.requests]
    assert (body["temperature"], body["n"], body["seed"]) == (0.7, 3, 5)


def test_diversified_drafts_get_distinct_wordings(stub):
    handler, base = stub
    handler.replies = ["Three ships are seen in the SAR image.", "Three ships are seen in the SAR image.",
                       "The SAR image shows three ships."]
    config = CaptionConfig(a2c_captions=3, sa2c_captions=0, rewrite_drafts=True, rewriter="chat",
                           chat=ChatEndpoint(base_url=base, model="m"))
    scene = Scene("s", 90, 90, [{"x_min": 1.0, "y_min": 1.0, "x_max": 9.0, "y_max": 5.0, "label": "ship"}] * 3)
    result = narrate(scene, config, rewriter=build_rewriter(config.rewriter, config.chat))
    assert [(c.text, c.route, c.rewriter) for c in result.accepted] == [
        ("Three ships are seen in the SAR image.", "a2c", "chat:m"),
        ("The SAR image shows three ships.", "a2c", "chat:m"),
        ("Three ships in the upper left of the SAR image.", "a2c", "rule"),  # both replies taken: rule wording
    ]
    assert not result.rejected
    assert [(r["body"]["temperature"], r["body"]["n"], r["body"]["seed"]) for r in handler.requests] == [
        (0.8, 3, 0), (0.8, 3, 1), (0.8, 3, 2)]
