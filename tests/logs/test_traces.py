"""Verbose traces are bounded: excerpts of a few hundred characters, redacted, rate-limited."""

import logging

import orjson

from tcp_dashboard.logs.traces import BURST, EXCERPT, FRAMES, Budget, trace_frame


def test_a_source_traces_a_burst_then_its_rate_and_says_what_it_skipped():
    budget = Budget(rate=0.5)
    assert [budget.take("okx public", now=100.0) for _ in range(int(BURST))] == [0] * int(BURST)
    assert [budget.take("okx public", now=100.0) for _ in range(3)] == [None] * 3
    assert budget.take("okx business", now=100.0) == 0  # each source has its own budget
    assert budget.take("okx public", now=101.0) is None  # half a line earned
    assert budget.take("okx public", now=102.0) == 4
    assert budget.take("okx public", now=102.0) is None


def test_a_traced_frame_is_an_excerpt_redacted_before_it_is_cut(caplog):
    frame = orjson.dumps({"padding": "x" * (EXCERPT - 40), "sign": "s" * 200, "more": "y" * 5000})
    with caplog.at_level(logging.DEBUG, logger=FRAMES.name):
        trace_frame("okx:BTC-USDT public", frame)
    [record] = caplog.records
    text = record.getMessage()
    assert f"okx:BTC-USDT public frame, {len(frame)} bytes: " in text
    assert "sss" not in text
    assert text.endswith("...")
    assert len(text.split(": ", 1)[1]) <= EXCERPT + 3
