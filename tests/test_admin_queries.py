"""The market-data admin's pages run only bounded queries: no full count, no DISTINCT for
filter choices, no date drill-down, a LIMIT on every read of a big table, and a search that
goes through the pairs' index. (How fast that is at 50M rows: bench/admin.py.)"""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from collectors.models import CollectorStatus, Exchange, TradingPair
from marketdata.models import Candle, MarketData, RawTrade
from tcp_dashboard.admin_lists import COUNT_CAP, MAX_PAGES

pytestmark = pytest.mark.django_db

BIG_TABLES = ("raw_trades", "market_data", "candles")
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def stored():
    okx = Exchange.objects.create(name="okx", public_ws_url="wss://ws.okx.com:8443/ws/v5/public")
    binance = Exchange.objects.create(name="binance", public_ws_url="wss://stream.binance.com/ws")
    TradingPair.objects.create(exchange=okx, symbol="BTC-USDT")
    TradingPair.objects.create(exchange=binance, symbol="BTCUSDT")
    RawTrade.objects.bulk_create(
        RawTrade(
            exchange="okx" if n % 2 else "binance",
            symbol="BTC-USDT" if n % 2 else "BTCUSDT",
            trade_id=str(n),
            price="50000.5",
            size="0.001",
            side="buy" if n % 3 else "sell",
            timestamp=NOW - timedelta(seconds=n, microseconds=250_000),
        )
        for n in range(1, 41)
    )
    MarketData.objects.create(
        exchange="okx", symbol="BTC-USDT", data_type="ticker", timestamp=NOW, data={"last": "1"}
    )
    Candle.objects.create(
        exchange="okx",
        symbol="BTC-USDT",
        timeframe="1m",
        timestamp=NOW,
        open=1,
        high=1,
        low=1,
        close=1,
        volume=1,
        quote_volume=1,
        vwap=1,
        trade_count=1,
    )


def changelist(model) -> str:
    return reverse(f"admin:marketdata_{model._meta.model_name}_changelist")


def big_table_queries(client, url: str, **params) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    assert response.status_code == 200, response.content[:500]
    return [
        query["sql"]
        for query in captured.captured_queries
        if any(f'"{table}"' in query["sql"] for table in BIG_TABLES)
    ]


PAGES = [
    (RawTrade, {}),
    (RawTrade, {"pair": "okx:BTC-USDT"}),
    (RawTrade, {"side": "buy", "within": "1h"}),
    (RawTrade, {"q": "BTC-USDT"}),
    (RawTrade, {"q": "okx BTC-USDT 7"}),
    (RawTrade, {"o": "0"}),
    (RawTrade, {"o": "1.-4.5"}),  # exchange, price, size: not sortable
    (MarketData, {}),
    (MarketData, {"data_type": "ticker", "pair": "okx:BTC-USDT"}),
    (MarketData, {"q": "BTC-USDT", "within": "30d"}),
    (Candle, {}),
    (Candle, {"timeframe": "1m", "q": "okx BTC-USDT"}),
]


@pytest.mark.parametrize(("model", "params"), PAGES, ids=lambda v: str(v))
def test_every_query_over_a_big_table_is_bounded(staff_client, stored, model, params):
    queries = big_table_queries(staff_client, changelist(model), **params)
    assert queries
    for sql in queries:
        assert "DISTINCT" not in sql.upper(), sql  # filter choices never read the table
        assert not re.search(r"date_trunc|django_date|EXTRACT\(", sql, re.I), sql  # drill-down
        assert "LIMIT" in sql.upper(), sql  # counts stop at a cap, lists at a page
        assert not re.search(r"ORDER BY .*\"(price|size|symbol|exchange)\"", sql), sql


def test_filter_choices_come_from_the_configuration_not_the_data(staff_client, stored):
    RawTrade.objects.create(
        exchange="kraken",
        symbol="XBT/USD",
        trade_id="1",
        price=1,
        size=1,
        side="buy",
        timestamp=NOW,
    )
    page = staff_client.get(changelist(RawTrade)).content.decode()
    assert "okx BTC-USDT" in page and "binance BTCUSDT" in page
    assert "XBT/USD" in page  # the row is listed ...
    assert "?pair=kraken" not in page  # ... but is no filter choice


def test_a_search_by_symbol_filters_on_the_exchange_and_symbol_index(staff_client, stored):
    queries = big_table_queries(staff_client, changelist(RawTrade), q="BTC-USDT")
    listing = queries[-1]
    assert '"raw_trades"."exchange" = \'okx\'' in listing
    assert '"raw_trades"."symbol" = \'BTC-USDT\'' in listing
    assert "UPPER" not in listing  # an exact match, which the index serves


def test_the_search_finds_a_pair_and_a_trade_id(staff_client, stored):
    def trade_ids(term: str) -> list[str]:
        response = staff_client.get(changelist(RawTrade), {"q": term})
        return sorted(row.trade_id for row in response.context["cl"].result_list)

    assert len(trade_ids("BTC-USDT")) == 20
    assert len(trade_ids("binance BTCUSDT")) == 20
    assert trade_ids("okx BTC-USDT 7") == ["7"]
    assert trade_ids("BTC-USDT 7") == ["7"]
    assert trade_ids("BTC-USDT 8") == []  # trade 8 is binance's
    assert trade_ids("NOPE-USDT") == []


def test_a_big_table_is_counted_by_estimate_and_a_filtered_list_up_to_a_cap(staff_client, stored):
    rows = COUNT_CAP + 500
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO raw_trades (exchange, symbol, trade_id, price, size, side, timestamp)
            SELECT 'okx', 'BTC-USDT', 'bulk-' || i, 1, 1, 'buy', now() - i * interval '1 ms'
            FROM generate_series(1, %s) AS i""",
            [rows],
        )
        cursor.execute("ANALYZE raw_trades")
    queries = big_table_queries(staff_client, changelist(RawTrade))
    assert not [sql for sql in queries if "COUNT(" in sql.upper()]  # pg_class's estimate
    queries = big_table_queries(staff_client, changelist(RawTrade), pair="okx:BTC-USDT")
    counts = [sql for sql in queries if "COUNT(" in sql.upper()]
    assert len(counts) == 1 and f"LIMIT {COUNT_CAP + 1}" in counts[0]
    response = staff_client.get(changelist(RawTrade), {"pair": "okx:BTC-USDT"})
    assert response.context["cl"].result_count >= COUNT_CAP
    assert response.context["cl"].paginator.num_pages == MAX_PAGES


def test_times_are_shown_in_utc_with_milliseconds(staff_client, stored):
    page = staff_client.get(changelist(RawTrade)).content.decode()
    first = NOW - timedelta(seconds=1, microseconds=250_000)
    assert first.strftime("%Y-%m-%d %H:%M:%S.750") in page


def test_the_candle_list_shows_one_timeframe_at_a_time(staff_client, stored):
    one = {
        field: getattr(Candle.objects.get(), field)
        for field in ("exchange", "symbol", "open", "high", "low", "close", "volume")
    }
    Candle.objects.create(
        **one, timeframe="1s", timestamp=NOW, quote_volume=1, vwap=1, trade_count=1
    )

    def timeframes(**params) -> set[str]:
        response = staff_client.get(changelist(Candle), params)
        return {candle.timeframe for candle in response.context["cl"].result_list}

    assert timeframes() == {"1m"}
    assert timeframes(timeframe="1s") == {"1s"}
    assert timeframes(timeframe="all") == {"1m"}
    queries = big_table_queries(staff_client, changelist(Candle))
    assert all('"candles"."timeframe" = \'1m\'' in sql for sql in queries)


@pytest.mark.parametrize(
    "params", [{}, {"q": "okx:BTC-USDT"}, {"status": "running", "within": "1d", "exchange": "okx"}]
)
def test_the_collector_status_history_is_listed_with_bounded_queries(staff_client, params):
    CollectorStatus.objects.create(
        name="okx:BTC-USDT",
        exchange="okx",
        symbol="BTC-USDT",
        status="running",
        should_be_running=True,
        is_healthy=True,
    )
    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get(reverse("admin:collectors_collectorstatus_changelist"), params)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 1
    queries = [q["sql"] for q in captured.captured_queries if '"collector_status"' in q["sql"]]
    assert queries
    for sql in queries:
        assert "DISTINCT" not in sql.upper(), sql
        assert not re.search(r"date_trunc|django_date|EXTRACT\(", sql, re.I), sql
        assert "LIMIT" in sql.upper(), sql
        assert "UPPER(" not in sql.upper(), sql  # an exact name, which the index serves
