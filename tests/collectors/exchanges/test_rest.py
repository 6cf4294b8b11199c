"""The exchanges' REST client against a real HTTP server on loopback."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from collectors.exchanges import rest
from collectors.exchanges.rest import RateLimited, get_json


class Canned(BaseHTTPRequestHandler):
    """Answers each GET with the next canned (status, headers, body)."""

    def do_GET(self):
        status, headers, body = self.server.answers.pop(0)
        self.server.paths.append(self.path)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    httpd.answers, httpd.paths = [], []
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_it_gets_json_with_the_query_encoded(server):
    server.answers.append((200, {}, b'{"ok": [1, 2]}'))
    assert get_json(server.url, "/api/v3/depth", {"symbol": "BTCUSDT", "limit": 5}, 2) == {
        "ok": [1, 2]
    }
    assert server.paths == ["/api/v3/depth?symbol=BTCUSDT&limit=5"]


@pytest.mark.parametrize("status", [429, 418])
def test_too_many_requests_and_a_ban_are_rate_limits_with_the_servers_retry_after(server, status):
    server.answers.append((status, {"Retry-After": "7"}, b"{}"))
    with pytest.raises(RateLimited) as raised:
        get_json(server.url, "/x", {}, 2)
    assert raised.value.retry_after == 7.0


def test_a_rate_limit_without_a_usable_retry_after_leaves_the_wait_to_the_caller(server):
    server.answers.append((429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"{}"))
    with pytest.raises(RateLimited) as raised:
        get_json(server.url, "/x", {}, 2)
    assert raised.value.retry_after is None


def test_an_oversized_answer_is_refused(server, monkeypatch):
    monkeypatch.setattr(rest, "MAX_ANSWER_BYTES", 100)
    server.answers.append((200, {}, b"[" + b"1," * 100 + b"1]"))
    with pytest.raises(OSError, match="over 100 bytes"):
        get_json(server.url, "/x", {}, 2)


def test_an_error_status_is_an_os_error_and_a_non_json_answer_a_value_error(server):
    server.answers += [(503, {}, b"busy"), (200, {}, b"<html>")]
    with pytest.raises(OSError, match="503"):
        get_json(server.url, "/x", {}, 2)
    with pytest.raises(ValueError):
        get_json(server.url, "/x", {}, 2)


def test_only_http_urls_are_fetched():
    with pytest.raises(ValueError, match="http"):
        get_json("file:///etc/passwd", "", {}, 2)
