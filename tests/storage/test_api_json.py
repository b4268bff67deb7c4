"""``APITransport.send(expect_json=True)``: a JSON answer cut short or garbled is retried (idempotent
calls) or reported as an uncertain ``TransportError`` (others), never handed on unparsed."""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from fusion_stac.errors import TransportError
from fusion_stac.storage import APITransport, JSONResponse, RetryPolicy

BODY = json.dumps({"model": {"id": "p1", "name": "run"}}).encode()


class JSONServer:
    """Answers every request with ``BODY``, faulted by the next entry of ``faults``: ``cut`` (no
    Content-Length, half the body, close), ``garble`` (a body that is not JSON), ``long`` (a
    Content-Length larger than the body, then close), ``html`` (200 text/html)."""

    def __init__(self) -> None:
        self.faults: deque[str] = deque()
        self.calls: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def answer(self) -> None:
                server.calls.append(self.command)
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                fault = server.faults.popleft() if server.faults else None
                body = b"<html>hi</html>" if fault == "html" else b'{"model": [' if fault == "garble" else BODY
                self.send_response(200)
                self.send_header("Content-Type", "text/html" if fault == "html" else "application/json")
                if fault == "cut":
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(body) + (50 if fault == "long" else 0)))
                self.end_headers()
                self.wfile.write(body)
                if fault == "long":
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True

            do_GET = do_POST = answer

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture()
def server() -> Iterator[JSONServer]:
    srv = JSONServer()
    yield srv
    srv.close()


def transport() -> APITransport:
    sleeps: list[float] = []
    http = APITransport(timeout=5.0, max_workers=2, retry=RetryPolicy(attempts=3), user_agent="t",
                        sleep=sleeps.append)
    return http


@pytest.mark.parametrize("fault", ["cut", "garble", "long"])
def test_a_cut_or_garbled_json_answer_to_a_get_is_retried(server: JSONServer, fault: str) -> None:
    http = transport()
    server.faults.append(fault)
    response = http.send("GET", server.url + "/processes/p1", shown="/processes/p1", expect_json=True)
    assert isinstance(response, JSONResponse) and response.payload == json.loads(BODY)
    assert response.json() is response.payload and response.status_code == 200
    assert http.stats.retries == 1 and server.calls == ["GET", "GET"]


@pytest.mark.parametrize("fault", ["cut", "garble", "long"])
def test_a_cut_json_answer_to_a_post_is_an_uncertain_transport_error(server: JSONServer, fault: str) -> None:
    http = transport()
    server.faults.append(fault)
    with pytest.raises(TransportError) as info:
        http.send("POST", server.url + "/processes", shown="/processes", json={"a": 1}, expect_json=True)
    assert info.value.method == "POST" and info.value.path == "/processes"
    assert server.calls == ["POST"] and http.stats.retries == 0  # never repeated blindly


def test_a_json_answer_that_keeps_arriving_garbled_ends_in_a_transport_error(server: JSONServer) -> None:
    http = transport()
    server.faults.extend(["garble"] * 3)
    with pytest.raises(TransportError, match="cut short or garbled after 3 attempt"):
        http.send("GET", server.url + "/x", shown="/x", expect_json=True)
    assert http.stats.retries == 2


def test_answers_not_labelled_json_are_left_to_the_caller(server: JSONServer) -> None:
    http = transport()
    server.faults.append("html")
    response = http.send("GET", server.url + "/x", shown="/x", expect_json=True)
    assert not isinstance(response, JSONResponse) and response.text == "<html>hi</html>"
    plain = http.send("GET", server.url + "/x", shown="/x")
    assert not isinstance(plain, JSONResponse) and plain.json() == json.loads(BODY)
    with pytest.raises(ValueError, match="stream"):
        http.send("GET", server.url + "/x", shown="/x", expect_json=True, stream=True)


def test_a_json_response_keeps_what_the_caller_reads(server: JSONServer) -> None:
    response = transport().send("GET", server.url + "/x?a=1", shown="/x", expect_json=True)
    assert isinstance(response, requests.Response) and response.url.endswith("/x?a=1")
    assert response.headers["Content-Type"] == "application/json" and response.content == BODY
