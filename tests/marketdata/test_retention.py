"""Retention removes exactly the days past their window, archived first; nothing when the
archive cannot be written; safe twice and while a collector writes."""

import asyncio
import contextlib
import subprocess
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest
from django.db import connection

from collectors.factory import ExchangeFactory
from collectors.models import CollectorStatus, Exchange, ExchangeRetention
from collectors.simulators.okx import OkxSimulator
from collectors.storage.sink import StorageSink
from collectors.types import DataType, ExchangeCollectorConfig
from marketdata import partitions
from marketdata.archive import sha256_of
from marketdata.footprint import lifecycle_health
from marketdata.models import ArchiveFile, Candle, MarketData, RawTrade, RetentionRun
from marketdata.retention import apply_retention
from tests.helpers import wait_until
from tests.marketdata.lifecycle import (
    NOW,
    WINDOWS,
    add_points,
    add_trades,
    days_ago,
    with_partitions,
)


@pytest.fixture
def windows(settings, archive_dir):
    settings.RETENTION_DAYS = dict(WINDOWS)
    return settings.RETENTION_DAYS


def ids(queryset) -> set[int]:
    return set(queryset.values_list("id", flat=True))


def candle(moment: datetime, timeframe: str) -> Candle:
    prices = {name: "1" for name in ("open", "high", "low", "close", "vwap")}
    return Candle.objects.create(
        exchange="okx",
        symbol="BTC-USDT",
        timeframe=timeframe,
        timestamp=moment,
        volume="1",
        quote_volume="1",
        trade_count=1,
        is_final=True,
        **prices,
    )


def status(moment: datetime) -> CollectorStatus:
    row = CollectorStatus.objects.create(
        name="okx:BTC-USDT",
        exchange="okx",
        symbol="BTC-USDT",
        status="running",
        should_be_running=True,
        is_healthy=True,
    )
    CollectorStatus.objects.filter(pk=row.pk).update(recorded_at=moment)
    return row


@pytest.fixture
def history(windows):
    """Rows on both sides of every window; binance keeps its trades 20 days."""
    exchange = Exchange.objects.create(name="binance", public_ws_url="wss://example.invalid/ws")
    ExchangeRetention.objects.create(exchange=exchange, kind="trade", days=20)
    with_partitions(*(days_ago(n).date() for n in range(13)))
    past = {
        "trade": add_trades(days_ago(12)) + add_trades(days_ago(11, 23), first_id=10),
        "orderbook": add_points(days_ago(3), "orderbook"),
        "ticker": add_points(days_ago(6, 0), "ticker"),
        "candles_1s": [candle(days_ago(3), "1s")],
        "status": [status(days_ago(4))],
    }
    kept = {
        # the day the window's edge falls on stays whole; binance's trades are within 20 days
        "trade": add_trades(days_ago(10, 0), first_id=20)
        + add_trades(days_ago(11), exchange="binance", first_id=30)
        + add_trades(NOW, first_id=40),
        "orderbook": add_points(days_ago(2, 0), "orderbook"),
        "ticker": add_points(days_ago(5, 0), "ticker"),
        "candles": [candle(days_ago(700), "1m"), candle(days_ago(3), "1m")],
        "candles_1s": [candle(days_ago(2), "1s")],
        "status": [status(days_ago(3, 1))],
    }
    return past, kept


def all_rows() -> dict[str, set[int]]:
    return {
        "trade": ids(RawTrade.objects.all()),
        "market": ids(MarketData.objects.all()),
        "candles": ids(Candle.objects.all()),
        "status": ids(CollectorStatus.objects.all()),
    }


def expected(kept) -> dict[str, set[int]]:
    market = kept["orderbook"] + kept["ticker"]
    return {
        "trade": {r.id for r in kept["trade"]},
        "market": {r.id for r in market},
        "candles": {r.id for r in kept["candles"] + kept["candles_1s"]},
        "status": {r.id for r in kept["status"]},
    }


@pytest.mark.django_db
def test_retention_removes_exactly_what_is_past_its_window_and_archives_it(history, archive_dir):
    past, kept = history
    report = apply_retention(NOW)
    assert report.ok, report.errors
    assert all_rows() == expected(kept)
    files = {(f.kind, f.exchange, f.day.isoformat()): f for f in ArchiveFile.objects.all()}
    assert {key: f.rows for key, f in files.items()} == {
        ("trade", "okx", "2024-03-08"): 3,
        ("trade", "okx", "2024-03-09"): 3,
        ("orderbook", "okx", "2024-03-17"): 3,
        ("ticker", "okx", "2024-03-14"): 3,
    }
    assert all(f.removed_at is not None for f in files.values())
    archived = pq.read_table(archive_dir / "trade/okx/2024-03-08.parquet")
    assert sorted(archived.column("id").to_pylist()) == sorted(r.id for r in past["trade"][:3])
    # a day only okx had left as a whole partition; the day binance still keeps did not
    trade_days = partitions.attached_days(partitions.DAILY_TABLE_OF_KIND["trade"])
    assert days_ago(12).date() not in trade_days
    assert days_ago(11).date() in trade_days
    run = RetentionRun.objects.get()
    assert run.ok and run.finished_at is not None
    assert run.storage["trade"]["oldest_archived"] == "2024-03-08"
    assert run.storage["trade"]["oldest_in_database"] == "2024-03-09"
    assert len((archive_dir / "manifest.jsonl").read_text().splitlines()) == 4


@pytest.mark.django_db
def test_a_second_run_finds_nothing_to_do(history, archive_dir):
    assert apply_retention(NOW).ok
    rows = all_rows()
    checksums = {f.path: sha256_of(archive_dir / f.path) for f in ArchiveFile.objects.all()}
    again = apply_retention(NOW)
    assert again.ok and again.actions == []
    assert all_rows() == rows
    assert {f.path: sha256_of(archive_dir / f.path) for f in ArchiveFile.objects.all()} == checksums


@pytest.mark.django_db
def test_a_dry_run_says_what_it_would_do_and_changes_nothing(history, archive_dir):
    before = all_rows()
    report = apply_retention(NOW, dry_run=True)
    assert report.ok
    assert "would archive, then drop partition: trade 2024-03-08 okx (3 rows)" in report.actions
    assert "would archive, then delete: trade 2024-03-09 okx (3 rows)" in report.actions
    assert "would delete: candles_1s 2024-03-17 okx (1 rows)" in report.actions
    assert all_rows() == before
    assert not ArchiveFile.objects.exists() and not RetentionRun.objects.exists()
    assert not archive_dir.exists() or not any(archive_dir.rglob("*.parquet"))


@pytest.fixture
def full_archive_dir(settings, tmp_path):
    """ARCHIVE_DIR on a small file system that is full."""
    mount = tmp_path / "full"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        with (mount / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 4096)
        settings.ARCHIVE_DIR = mount / "archive"
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.django_db
def test_a_failed_archive_write_removes_nothing_and_shows_as_unhealthy(history, full_archive_dir):
    before = all_rows()
    report = apply_retention(NOW)
    assert not report.ok
    assert "trade: archive write failed (no space left on device)" in report.errors
    after = all_rows()
    assert after["trade"] == before["trade"]
    assert after["market"] == before["market"]
    assert after["candles"] == expected(history[1])["candles"]  # not archived: still removed
    assert days_ago(12).date() in partitions.attached_days(partitions.DAILY_TABLE_OF_KIND["trade"])
    assert not list(full_archive_dir.rglob("*.parquet")) and not list(
        full_archive_dir.rglob("*.tmp")
    )
    assert not ArchiveFile.objects.exists()
    health = lifecycle_health(NOW)
    assert not health.ok
    assert "archive write failed (no space left on device)" in health.detail


@pytest.mark.django_db
def test_rows_that_reach_an_archived_day_late_are_added_to_its_file(windows, archive_dir):
    with_partitions(days_ago(12).date())
    add_trades(days_ago(12))
    assert apply_retention(NOW).ok
    late = add_trades(days_ago(12, 20), first_id=100)  # its partition is gone: the default
    report = apply_retention(NOW)
    assert report.ok
    assert not RawTrade.objects.exists()
    record = ArchiveFile.objects.get()
    assert record.rows == 6
    table = pq.read_table(archive_dir / record.path)
    assert {r.id for r in late} <= set(table.column("id").to_pylist())


@pytest.mark.django_db
def test_a_partition_left_detached_by_a_stopped_run_is_archived_and_dropped(windows, archive_dir):
    with_partitions(days_ago(12).date())
    rows = add_trades(days_ago(12))
    table = partitions.DAILY_TABLE_OF_KIND["trade"]
    partitions.detach_partition(table, table.partition(days_ago(12).date()))
    assert apply_retention(NOW).ok
    assert (
        table.partition(days_ago(12).date()) not in partitions.detached_partitions(table).values()
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM raw_trade_keys")
        assert cursor.fetchone() == (0,)
    record = ArchiveFile.objects.get()
    assert record.rows == len(rows) and record.removed_at is not None


# while a collector writes -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_retention_removes_only_the_past_while_a_collector_writes(settings, archive_dir, tmp_path):
    settings.RETENTION_DAYS = dict(WINDOWS)
    now = datetime.now(UTC)
    old_day = (now - timedelta(days=15)).date()
    with_partitions(old_day)
    old_trades = add_trades(datetime.combine(old_day, datetime.min.time(), UTC), count=50)
    old_books = add_points(now - timedelta(days=4), "orderbook", count=20)

    simulator = OkxSimulator(seed=3, rate=200.0)
    simulator.start()
    sink = StorageSink(
        name="retention-live", buffer_size=50, flush_interval=0.02, spill_dir=tmp_path / "spill"
    )
    sink.start()
    config = ExchangeCollectorConfig(
        "okx",
        "BTC-USDT",
        [DataType.TRADE, DataType.ORDERBOOK],
        custom_params={
            "public_ws_url": simulator.public_url,
            "business_ws_url": simulator.business_url,
            "rest_url": simulator.rest_url,
            "channels": {"trades": "trades", "orderbook": "books5"},
        },
    )
    collector = ExchangeFactory.create_collector(config)
    collector.sink = sink
    try:
        assert asyncio.run(collector.start())
        wait_until(
            lambda: RawTrade.objects.filter(timestamp__gte=now).count() > 100,
            20,
            message="the collector to store trades",
        )
        report = apply_retention()
        writing = RawTrade.objects.filter(timestamp__gte=now).count()
        wait_until(
            lambda: RawTrade.objects.filter(timestamp__gte=now).count() > writing + 100,
            20,
            message="the collector to go on storing",
        )
    finally:
        asyncio.run(collector.stop())
        sink.flush(10)
        sink.stop()
        simulator.stop()
    assert report.ok, report.errors
    assert not RawTrade.objects.filter(id__in=[r.id for r in old_trades]).exists()
    assert not MarketData.objects.filter(id__in=[r.id for r in old_books]).exists()
    assert ArchiveFile.objects.get(kind="trade").rows == 50
    assert ArchiveFile.objects.get(kind="orderbook").rows == 20
    sent = {t["tradeId"] for t in simulator.sent_trades("BTC-USDT")}
    stored = set(RawTrade.objects.values_list("trade_id", flat=True))
    assert sent <= stored  # every live trade is kept
    assert MarketData.objects.filter(data_type="orderbook", timestamp__gte=now).exists()
