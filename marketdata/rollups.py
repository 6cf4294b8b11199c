"""Candles rebuilt from `raw_trades` (set-based SQL), derived from smaller ones, and rolled up.

On PostgreSQL each rebuild is one INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE.
On SQLite, the embedded default database, the same candles come from the same Python
fold the live aggregator uses (`marketdata.candles`), streamed over the stored trades:
fine for a laptop, slow for months of trades.

Only closed intervals are written, always as final: an interval ending at T is closed
once the wall clock has passed T + grace. Nothing here writes a candle that is still open.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from marketdata.candles import (
    CANDLE_FIELDS,
    DEFAULT_GRACE,
    CandleValue,
    Trade,
    ceil_boundary,
    check_derivable,
    derive_candles,
    floor_boundary,
    fold_trades,
    store_candles,
    timeframe_delta,
    timeframe_seconds,
)
from marketdata.models import Candle, RawTrade

ROLLUP_TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
DEFAULT_LOOKBACK = timedelta(minutes=15)
EPOCH_SQL = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
PORTABLE_BATCH = 5000

# Trade order inside an interval: timestamp, then all-digit ids as numbers, other ids as
# text by code point, trades without an id last, then arrival (row id). The same order
# as `marketdata.candles.trade_order_key`.
FIRST_TRADE = """
    CASE WHEN r.trade_id ~ '^[0-9]+$' THEN 0 WHEN r.trade_id IS NOT NULL THEN 1 ELSE 2 END,
    CASE WHEN r.trade_id ~ '^[0-9]+$' THEN r.trade_id::numeric END,
    r.trade_id COLLATE "C",
    r.id
"""
LAST_TRADE = """
    CASE WHEN r.trade_id ~ '^[0-9]+$' THEN 0 WHEN r.trade_id IS NOT NULL THEN 1 ELSE 2 END DESC,
    CASE WHEN r.trade_id ~ '^[0-9]+$' THEN r.trade_id::numeric END DESC,
    r.trade_id COLLATE "C" DESC,
    r.id DESC
"""

# VWAP = quote_volume / volume, rounded half-even to 8 places from the exact integer
# quotient and remainder, as `marketdata.candles.vwap_of` does.
VWAP_SQL = """
    CASE WHEN b.volume = 0 THEN b.close ELSE
        (div(b.quote_volume * 100000000, b.volume)
         + CASE sign(2 * mod(b.quote_volume * 100000000, b.volume) - b.volume)
               WHEN 1 THEN 1
               WHEN 0 THEN mod(div(b.quote_volume * 100000000, b.volume), 2)
               ELSE 0
           END) * 0.00000001
    END
"""

UPSERT_SQL = f"""
INSERT INTO candles (
    exchange, symbol, timeframe, timestamp, open, high, low, close,
    volume, quote_volume, vwap, trade_count, is_final, created_at, updated_at
)
SELECT b.exchange, b.symbol, %(timeframe)s, b.bucket, b.open, b.high, b.low, b.close,
       b.volume, b.quote_volume, {VWAP_SQL}, b.trade_count, true, now(), now()
FROM buckets b
ORDER BY b.exchange, b.symbol, b.bucket
ON CONFLICT (exchange, symbol, timeframe, timestamp) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, quote_volume = EXCLUDED.quote_volume, vwap = EXCLUDED.vwap,
    trade_count = EXCLUDED.trade_count, is_final = true, updated_at = now()
WHERE (candles.open, candles.high, candles.low, candles.close, candles.volume,
       candles.quote_volume, candles.vwap, candles.trade_count, candles.is_final)
   IS DISTINCT FROM
      (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume,
       EXCLUDED.quote_volume, EXCLUDED.vwap, EXCLUDED.trade_count, true)
"""

# One pass over the trades for the sums and the first and last timestamps, then an index
# lookup per candle for the open and close prices: PostgreSQL 15 sorts each group for
# array_agg(... ORDER BY ...), which measured twice as slow.
FROM_TRADES_SQL = f"""
WITH sums AS MATERIALIZED (
    SELECT exchange, symbol,
           date_bin(%(width)s, timestamp, {EPOCH_SQL}) + %(width)s AS bucket,
           min(timestamp) AS first_at, max(timestamp) AS last_at,
           max(price) AS high, min(price) AS low,
           sum(size) AS volume, sum(price * size) AS quote_volume,
           count(*)::integer AS trade_count
    FROM raw_trades
    WHERE timestamp >= %(start)s AND timestamp < %(end)s {{market}}
    GROUP BY 1, 2, 3
), buckets AS MATERIALIZED (
    SELECT s.*,
        (SELECT r.price FROM raw_trades r
         WHERE r.exchange = s.exchange AND r.symbol = s.symbol AND r.timestamp = s.first_at
         ORDER BY {FIRST_TRADE} LIMIT 1) AS open,
        (SELECT r.price FROM raw_trades r
         WHERE r.exchange = s.exchange AND r.symbol = s.symbol AND r.timestamp = s.last_at
         ORDER BY {LAST_TRADE} LIMIT 1) AS close
    FROM sums s
)
{UPSERT_SQL}
"""

FROM_CANDLES_SQL = f"""
WITH buckets AS MATERIALIZED (
    SELECT exchange, symbol,
           date_bin(%(width)s, timestamp - %(source_width)s, {EPOCH_SQL}) + %(width)s AS bucket,
           (array_agg(open ORDER BY timestamp))[1] AS open,
           (array_agg(close ORDER BY timestamp DESC))[1] AS close,
           max(high) AS high, min(low) AS low,
           sum(volume) AS volume, sum(quote_volume) AS quote_volume,
           sum(trade_count)::integer AS trade_count
    FROM candles
    WHERE timeframe = %(source)s AND is_final AND timestamp > %(start)s AND timestamp <= %(end)s
          {{market}}
    GROUP BY 1, 2, 3
)
{UPSERT_SQL}
"""


MARKET_SQL = "AND exchange = %(exchange)s AND symbol = %(symbol)s"


def closed_until(
    timeframe: str, now: datetime | None = None, grace: timedelta = DEFAULT_GRACE
) -> datetime:
    """The end of the latest interval of `timeframe` that is closed at `now`."""
    return floor_boundary((now or datetime.now(UTC)) - grace, timeframe)


def candle_range(
    timeframe: str, start: datetime, end: datetime, now: datetime | None, grace: timedelta
) -> tuple[datetime, datetime]:
    """Whole intervals covering [start, end), cut back to those closed at `now`."""
    last = min(ceil_boundary(end, timeframe), closed_until(timeframe, now, grace))
    return floor_boundary(start, timeframe), last


def rebuild_candles(
    timeframe: str,
    start: datetime,
    end: datetime,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    now: datetime | None = None,
    grace: timedelta = DEFAULT_GRACE,
) -> int:
    """Recompute from `raw_trades` the candles of every interval overlapping [start, end).

    One market, or every market when exchange and symbol are None. Intervals not closed
    at `now` are left out. Upserts; a stored candle the trades no longer produce (none
    in range) is left as it is. Returns the number of candles written or changed (on
    SQLite: written).
    """
    check_market(exchange, symbol)
    width = timeframe_delta(timeframe)
    low, high = candle_range(timeframe, start, end, now, grace)
    if high <= low:
        return 0
    if connection.vendor != "postgresql":
        candles = fold_stored_trades(timeframe, low, high, exchange=exchange, symbol=symbol)
        store_candles(candles, replace=True)
        return len(candles)
    params = {"timeframe": timeframe, "width": width, "start": low, "end": high}
    return _execute(FROM_TRADES_SQL, params, exchange, symbol)


def derive_stored_candles(
    timeframe: str,
    source: str,
    start: datetime,
    end: datetime,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    now: datetime | None = None,
    grace: timedelta = DEFAULT_GRACE,
) -> int:
    """Recompute candles of `timeframe` from the stored final candles of `source`.

    Equal to `rebuild_candles` when every `source` candle of the range is stored and
    current: the sums are exact and open/close come from the first and last candle.
    """
    check_market(exchange, symbol)
    check_derivable(source, timeframe)
    low, high = candle_range(timeframe, start, end, now, grace)
    if high <= low:
        return 0
    if connection.vendor != "postgresql":
        rows = Candle.objects.filter(
            timeframe=source, is_final=True, timestamp__gt=low, timestamp__lte=high
        )
        if exchange is not None:
            rows = rows.filter(exchange=exchange, symbol=symbol)
        lower = [CandleValue(*row) for row in rows.values_list(*CANDLE_FIELDS)]
        candles = derive_candles(lower, timeframe)
        store_candles(candles, replace=True)
        return len(candles)
    params = {
        "timeframe": timeframe,
        "source": source,
        "width": timeframe_delta(timeframe),
        "source_width": timeframe_delta(source),
        "start": low,
        "end": high,
    }
    return _execute(FROM_CANDLES_SQL, params, exchange, symbol)


def check_market(exchange: str | None, symbol: str | None) -> None:
    if (exchange is None) != (symbol is None):
        raise ValueError("give both exchange and symbol, or neither")


def _execute(sql: str, params: dict, exchange: str | None, symbol: str | None) -> int:
    market = ""
    if exchange is not None:
        market = MARKET_SQL
        params = {**params, "exchange": exchange, "symbol": symbol}
    with transaction.atomic(), connection.cursor() as cursor:
        # Compiling this query to machine code costs more than running it.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql.format(market=market), params)
        return cursor.rowcount


def fold_stored_trades(
    timeframe: str,
    start: datetime,
    end: datetime,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
) -> list[CandleValue]:
    """Candles of the stored trades in [start, end), folded in Python (any database)."""
    rows = RawTrade.objects.filter(timestamp__gte=start, timestamp__lt=end)
    if exchange is not None:
        rows = rows.filter(exchange=exchange, symbol=symbol)
    rows = rows.order_by("exchange", "symbol", "timestamp", "id").values_list(
        "exchange", "symbol", "timestamp", "price", "size", "trade_id", "id"
    )
    candles: list[CandleValue] = []
    for (market_exchange, market_symbol), group in itertools.groupby(
        rows.iterator(chunk_size=PORTABLE_BATCH), key=lambda row: (row[0], row[1])
    ):
        candles.extend(fold_trades(_trades(group), market_exchange, market_symbol, timeframe))
    return candles


def _trades(rows: Iterable[tuple]) -> Iterator[Trade]:
    for _, _, timestamp, price, size, trade_id, row_id in rows:
        yield Trade(timestamp.astimezone(UTC), price, size, trade_id, row_id)


def stored_trade_range(exchange: str, symbol: str) -> tuple[datetime, datetime] | None:
    """First and last stored trade timestamps of one market; None when it has none."""
    from django.db.models import Max, Min

    found = RawTrade.objects.filter(exchange=exchange, symbol=symbol).aggregate(
        first=Min("timestamp"), last=Max("timestamp")
    )
    if found["first"] is None:
        return None
    return found["first"], found["last"] + timedelta(microseconds=1)


# the rollup -----------------------------------------------------------------------------


def rollup_settings() -> tuple[tuple[str, ...], timedelta, timedelta]:
    """Timeframes, lookback and grace of the rollup, from settings when they are there."""
    timeframes = tuple(getattr(settings, "CANDLE_ROLLUP_TIMEFRAMES", ROLLUP_TIMEFRAMES))
    lookback = getattr(settings, "CANDLE_ROLLUP_LOOKBACK", DEFAULT_LOOKBACK.total_seconds())
    grace = getattr(settings, "CANDLE_GRACE", DEFAULT_GRACE.total_seconds())
    for timeframe in timeframes:
        timeframe_seconds(timeframe)
    return timeframes, timedelta(seconds=float(lookback)), timedelta(seconds=float(grace))


def rollup_recent_candles(
    *,
    now: datetime | None = None,
    lookback: timedelta | None = None,
    grace: timedelta | None = None,
    timeframes: Iterable[str] | None = None,
    exchange: str | None = None,
    symbol: str | None = None,
) -> dict[str, int]:
    """Rebuild, from `raw_trades`, every closed candle whose interval overlaps the last
    `lookback`, for every market (or one), so late trades stored since are folded in.

    Each timeframe comes straight from the trades, so none depends on another being
    stored. Safe to run twice or concurrently: it upserts in a fixed order. Returns
    candles written or changed per timeframe.
    """
    default_timeframes, default_lookback, default_grace = rollup_settings()
    now = now or datetime.now(UTC)
    lookback = default_lookback if lookback is None else lookback
    grace = default_grace if grace is None else grace
    written: dict[str, int] = {}
    for timeframe in timeframes or default_timeframes:
        written[timeframe] = rebuild_candles(
            timeframe,
            now - lookback,
            now,
            exchange=exchange,
            symbol=symbol,
            now=now,
            grace=grace,
        )
    return written
