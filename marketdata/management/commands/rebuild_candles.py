"""`manage.py rebuild_candles`: recompute one market's candles from `raw_trades`, idempotently."""

from django.core.management.base import BaseCommand, CommandError

from marketdata.candles import TIMEFRAMES, timeframe_seconds
from marketdata.rollups import derive_stored_candles, rebuild_candles, stored_trade_range
from marketdata.times import parse_time


class Command(BaseCommand):
    help = (
        "Recompute the candles of one market from its stored trades (or, with "
        "--from-timeframe, from its stored smaller candles) and upsert them. Only intervals "
        "that have closed are written."
    )

    def add_arguments(self, parser):
        parser.add_argument("--exchange", required=True)
        parser.add_argument("--symbol", required=True)
        parser.add_argument(
            "--timeframe",
            required=True,
            help=f"One or more, comma-separated, of {', '.join(TIMEFRAMES)}.",
        )
        parser.add_argument(
            "--start", help="ISO 8601 (UTC unless it says otherwise) or epoch milliseconds."
        )
        parser.add_argument(
            "--end",
            help="ISO 8601 (UTC unless it says otherwise) or epoch milliseconds; exclusive.",
        )
        parser.add_argument(
            "--from-timeframe",
            help="Derive from these stored candles instead of from the trades.",
        )

    def handle(self, *args, exchange, symbol, timeframe, start, end, from_timeframe, **options):
        try:
            timeframes = [name.strip() for name in timeframe.split(",") if name.strip()]
            for name in [*timeframes, *([from_timeframe] if from_timeframe else [])]:
                timeframe_seconds(name)
            first, last = self._range(exchange, symbol, start, end)
        except ValueError as error:
            raise CommandError(str(error)) from None
        if first is None:
            self.stdout.write(f"{exchange} {symbol}: no stored trades, nothing to rebuild")
            return
        if last <= first:
            raise CommandError("--end must be after --start")
        for name in sorted(timeframes, key=timeframe_seconds):
            try:
                if from_timeframe:
                    written = derive_stored_candles(
                        name, from_timeframe, first, last, exchange=exchange, symbol=symbol
                    )
                else:
                    written = rebuild_candles(name, first, last, exchange=exchange, symbol=symbol)
            except ValueError as error:
                raise CommandError(str(error)) from None
            source = f"{from_timeframe} candles" if from_timeframe else "trades"
            self.stdout.write(
                f"{exchange} {symbol} {name}: {written} candles written or changed, from "
                f"{source} in [{first.isoformat()}, {last.isoformat()})"
            )

    def _range(self, exchange, symbol, start, end):
        first = self._time("--start", start)
        last = self._time("--end", end)
        if first is None or last is None:
            stored = stored_trade_range(exchange, symbol)
            if stored is None:
                return None, None
            first = first or stored[0]
            last = last or stored[1]
        return first, last

    @staticmethod
    def _time(option: str, text: str | None):
        try:
            return parse_time(text) if text else None
        except ValueError as error:
            raise ValueError(f"{option} {error}") from None
