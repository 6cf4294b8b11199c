"""The exchanges' REST client against a real HTTP server on loopback (the `rest` fixture)."""

import pytest

from collectors.exchanges import rest as rest_client
from collectors.exchanges.rest import RateLimited, get_json


def test_it_gets_json_with_the_query_encoded(rest):
    rest.answers.append((200, {}, b'{"ok": [1, 2]}'))
    assert get_json(rest.url, "/api/v3/depth", {"symbol": "BTCUSDT", "limit": 5}, 2) == {
        "ok": [1, 2]
    }
    assert rest.paths == ["/api/v3/depth?symbol=BTCUSDT&limit=5"]


@pytest.mark.parametrize("status", [429, 418])
def test_too_many_requests_and_a_ban_are_rate_limits_with_the_servers_retry_after(rest, status):
    rest.answers.append((status, {"Retry-After": "7"}, b"{}"))
    with pytest.raises(RateLimited) as raised:
        get_json(rest.url, "/x", {}, 2)
    assert raised.value.retry_after == 7.0


def test_a_rate_limit_without_a_usable_retry_after_leaves_the_wait_to_the_caller(rest):
    rest.answers.append((429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"{}"))
    with pytest.raises(RateLimited) as raised:
        get_json(rest.url, "/x", {}, 2)
    assert raised.value.retry_after is None


def test_an_oversized_answer_is_refused(rest, monkeypatch):
    monkeypatch.setattr(rest_client, "MAX_ANSWER_BYTES", 100)
    rest.answers.append((200, {}, b"[" + b"1," * 100 + b"1]"))
    with pytest.raises(OSError, match="over 100 bytes"):
        get_json(rest.url, "/x", {}, 2)


def test_an_error_status_is_an_os_error_and_a_non_json_answer_a_value_error(rest):
    rest.answers += [(503, {}, b"busy"), (200, {}, b"<html>")]
    with pytest.raises(OSError, match="503"):
        get_json(rest.url, "/x", {}, 2)
    with pytest.raises(ValueError):
        get_json(rest.url, "/x", {}, 2)


def test_only_http_urls_are_fetched():
    with pytest.raises(ValueError, match="http"):
        get_json("file:///etc/passwd", "", {}, 2)
