"""`manage.py rebuild_candles`: on PostgreSQL, and on the embedded SQLite default."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from marketdata.candles import fetch_candles
from marketdata.models import RawTrade
from tests.helpers import ROOT, candle_json, service_env

pytestmark = pytest.mark.django_db
NOON = datetime(2024, 3, 9, 12, 0, tzinfo=UTC)
TRADES = [(i * 47.3, str(100 + i % 11), f"0.{i + 1}", str(1000 + i)) for i in range(120)]


def add_trades(trades=TRADES, symbol="BTC-USDT"):
    RawTrade.objects.bulk_create(
        RawTrade(
            exchange="okx",
            symbol=symbol,
            trade_id=trade_id,
            price=Decimal(price),
            size=Decimal(size),
            side="sell",
            timestamp=NOON + timedelta(seconds=seconds),
        )
        for seconds, price, size, trade_id in trades
    )


def rebuild(*args: str) -> str:
    out = StringIO()
    call_command("rebuild_candles", "--exchange", "okx", "--symbol", "BTC-USDT", *args, stdout=out)
    return out.getvalue()


def stored(timeframe: str, symbol: str = "BTC-USDT"):
    return fetch_candles(
        "okx", symbol, timeframe, NOON - timedelta(days=1), NOON + timedelta(days=1)
    )


def test_it_rebuilds_the_candles_of_the_range_it_is_given():
    add_trades()
    output = rebuild(
        "--timeframe", "1m", "--start", "2024-03-09T12:00:00Z", "--end", "2024-03-09T12:10"
    )
    assert "okx BTC-USDT 1m: 10 candles written or changed" in output
    assert [c.timestamp for c in stored("1m")][-1] == NOON + timedelta(minutes=10)
    assert "0 candles written or changed" in rebuild(
        "--timeframe", "1m", "--start", "2024-03-09T12:00:00Z", "--end", "2024-03-09T12:10"
    )


def test_without_a_range_it_rebuilds_every_stored_trade_of_the_market():
    add_trades()
    add_trades(symbol="ETH-USDT")
    output = rebuild("--timeframe", "1m,1h")
    assert "1m: 94 candles" in output and "1h: 2 candles" in output
    assert sum(c.trade_count for c in stored("1h")) == len(TRADES)
    assert stored("1m", symbol="ETH-USDT") == []


def test_it_derives_larger_candles_from_stored_smaller_ones():
    add_trades()
    rebuild("--timeframe", "1m")
    output = rebuild("--timeframe", "15m,1h", "--from-timeframe", "1m")
    assert "from 1m candles" in output
    derived = {timeframe: stored(timeframe) for timeframe in ("15m", "1h")}
    assert "0 candles written or changed" in rebuild("--timeframe", "15m")
    assert "0 candles written or changed" in rebuild("--timeframe", "1h")
    assert {timeframe: stored(timeframe) for timeframe in ("15m", "1h")} == derived


def test_it_says_so_when_the_market_has_no_trades():
    assert "no stored trades" in rebuild("--timeframe", "1m")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeframe", "2m"], "unknown timeframe '2m'"),
        (["--timeframe", "1m", "--from-timeframe", "1h"], "1m candles cannot be built from 1h"),
        (["--timeframe", "1m", "--start", "yesterday"], "--start is not a time: give ISO 8601"),
        (["--timeframe", "1m", "--end", "9999-12-31T23:00:00-05:00"], "--end is out of range"),
        (["--timeframe", "1m", "--start", "2024-03-09", "--end", "2024-03-08"], "after --start"),
    ],
)
def test_it_refuses_bad_arguments_with_a_clear_error(args, message):
    add_trades()
    with pytest.raises(CommandError, match=message):
        rebuild(*args)


def test_on_the_embedded_sqlite_database_it_builds_the_same_candles(tmp_path):
    add_trades()
    rebuild("--timeframe", "1m,5m")
    expected = {tf: [candle_json(c) for c in stored(tf)] for tf in ("1m", "5m")}

    env = service_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", VAR_DIR=str(tmp_path))
    manage = [sys.executable, "manage.py"]

    def run(*args):
        done = subprocess.run(
            [*manage, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    # The system checks have tests of their own; a failing one must not hide this path.
    run("migrate", "--verbosity", "0", "--skip-checks")
    run("shell", "-c", INSERT_TRADES.format(trades=TRADES))
    assert "1m: 94 candles" in run(
        "rebuild_candles",
        "--exchange",
        "okx",
        "--symbol",
        "BTC-USDT",
        "--timeframe",
        "1m,5m",
        "--skip-checks",
    )
    found = json.loads(run("shell", "-c", DUMP_CANDLES).splitlines()[-1])
    assert found == expected


INSERT_TRADES = """
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from marketdata.models import RawTrade
noon = datetime(2024, 3, 9, 12, 0, tzinfo=UTC)
RawTrade.objects.bulk_create(
    RawTrade(exchange="okx", symbol="BTC-USDT", trade_id=i, price=Decimal(p), size=Decimal(s),
             side="sell", timestamp=noon + timedelta(seconds=t))
    for t, p, s, i in {trades}
)
"""
DUMP_CANDLES = f"""
import json
from datetime import UTC, datetime
from marketdata.candles import fetch_candles
from tests.helpers import candle_json
start, end = datetime(2024, 3, 8, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC)
print(json.dumps({{tf: [candle_json(c) for c in fetch_candles("okx", "BTC-USDT", tf, start, end)]
                  for tf in {("1m", "5m")!r}}}))
"""
