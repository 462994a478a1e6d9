"""The batched requests' errors, against a local server that answers badly: what goes into an
Application's status, events and logs never carries the request's bearer token."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from herd_operator.gitops import rawapi

TOKEN = "s3cret-token-never-shown"


@pytest.fixture
def garbling_server() -> Iterator[str]:
    """127.0.0.1: every connection gets a malformed HTTP answer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n{}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def test_a_bad_answer_never_carries_the_token(garbling_server: str) -> None:
    cfg = Configuration(host=garbling_server, api_key={"authorization": f"Bearer {TOKEN}"})
    api = ApiClient(configuration=cfg)
    requests = [
        rawapi.Request("PATCH", f"/api/v1/namespaces/x/configmaps/c{i}", [], "{}")
        for i in range(rawapi.SMALL_BATCH + 2)  # the batched (event loop) path
    ]
    answers = rawapi.many(api, requests, concurrency=2, timeout=10)
    assert len(answers) == len(requests)
    for answer in answers:
        assert isinstance(answer, ApiException), answer
        for text in (str(answer), repr(answer), str(answer.reason), str(answer.body)):
            assert TOKEN not in text and "Bearer" not in text, text
