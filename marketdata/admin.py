"""Admin for stored market data: read-only, with list and search pages that stay fast on
tables of tens of millions of rows (docs/security.md, "The admin on large tables").

Every query a page runs is bounded by an index: filter choices come from the configuration
or are fixed (never a DISTINCT over the table), the search goes through the trading pairs'
index, and the lists are tcp_dashboard.admin_lists' (estimated counts, a page limit, a
time window instead of the date drill-down).
"""

from django.contrib import admin
from django.db import connection
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from collectors.models import Exchange, TradingPair
from marketdata.backups.status import age, backup_status
from marketdata.candles import TIMEFRAMES
from marketdata.footprint import growth, growth_text, size_text
from marketdata.models import (
    ArchiveFile,
    Backup,
    Candle,
    MarketData,
    RawTrade,
    RestoreDrill,
    RetentionRun,
)
from marketdata.partitions import MARKET_DATA_TYPES, partitioned
from tcp_dashboard.admin_lists import (
    LargeTableAdmin,
    fixed_choices_filter,
    time_window_filter,
    utc_with_milliseconds,
)

MAX_PAIR_CHOICES = 500


class TimeframeFilter(admin.SimpleListFilter):
    """Always one timeframe (1m unless chosen): each has its own (timeframe, time) index,
    and a list of every timeframe at once would sort all of a pair's candles."""

    title = "timeframe"
    parameter_name = "timeframe"
    default = "1m"

    def lookups(self, request, model_admin):
        return [(timeframe, timeframe) for timeframe in TIMEFRAMES]

    def value(self):
        value = super().value()
        return value if value in TIMEFRAMES else self.default

    def choices(self, changelist):
        for choice in super().choices(changelist):
            if choice["display"] != "All":
                yield choice

    def queryset(self, request, queryset):
        return queryset.filter(timeframe=self.value())


class PairFilter(admin.SimpleListFilter):
    """The configured trading pairs: exchange and symbol, the leading columns of an index."""

    title = "trading pair"
    parameter_name = "pair"

    def lookups(self, request, model_admin):
        pairs = TradingPair.objects.order_by("exchange__name", "symbol").values_list(
            "exchange__name", "symbol"
        )[:MAX_PAIR_CHOICES]
        return [(f"{exchange}:{symbol}", f"{exchange} {symbol}") for exchange, symbol in pairs]

    def queryset(self, request, queryset):
        if self.value():
            exchange, _, symbol = self.value().partition(":")
            return queryset.filter(exchange=exchange, symbol=symbol)
        return queryset


def pair_search(queryset, term: str, trade_ids: bool = False):
    """`[exchange] symbol [trade id]`, exact: always on (exchange, symbol, ...) indexes. Without
    an exchange, the exchanges configured with that symbol (or, if none, all configured)."""
    words = term.split()
    if not words:
        return queryset
    exchanges = set(Exchange.objects.values_list("name", flat=True))
    exchange = words.pop(0) if len(words) > 1 and words[0] in exchanges else None
    if not words or len(words) > (2 if trade_ids else 1):
        return queryset.none()
    symbol = words[0]
    if exchange is None:
        configured = set(
            TradingPair.objects.filter(symbol=symbol).values_list("exchange__name", flat=True)
        )
        candidates = sorted(configured or exchanges)
    else:
        candidates = [exchange]
    if len(candidates) == 1:
        queryset = queryset.filter(exchange=candidates[0], symbol=symbol)
    else:
        queryset = queryset.filter(exchange__in=candidates, symbol=symbol)
    if len(words) == 2:
        queryset = queryset.filter(trade_id=words[1])
        if partitioned():
            # Partitioned trades have no index on the trade id; raw_trade_keys has, and
            # gives the trade's time, which picks its partition.
            times = trade_times(candidates, symbol, words[1])
            queryset = queryset.filter(timestamp__in=times) if times else queryset.none()
    return queryset


def trade_times(exchanges: list[str], symbol: str, trade_id: str) -> list:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT "timestamp" FROM raw_trade_keys
            WHERE exchange = ANY(%s) AND symbol = %s AND trade_id = %s""",
            [list(exchanges), symbol, trade_id],
        )
        return [row[0] for row in cursor.fetchall()]


class ReadOnlyAdmin(LargeTableAdmin):
    """Stored data is written by collectors, rollups and retention only."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class MarketDataListAdmin(ReadOnlyAdmin):
    """The big tables: newest first, sorted only by time, searched by pair."""

    ordering = ["-timestamp"]
    sortable_by = ["time"]
    search_help_text = "exchange (optional) and symbol, exactly: okx BTC-USDT"
    trade_ids = False

    @admin.display(description="time (UTC)", ordering="timestamp")
    def time(self, row) -> str:
        return utc_with_milliseconds(row.timestamp)

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return pair_search(queryset, search_term, self.trade_ids), False


@admin.register(RawTrade)
class RawTradeAdmin(MarketDataListAdmin):
    list_display = ["time", "exchange", "symbol", "trade_id", "side", "price", "size"]
    list_filter = [
        time_window_filter("timestamp"),
        PairFilter,
        fixed_choices_filter("side", "side", ["buy", "sell"]),
    ]
    search_fields = ["symbol"]  # shows the box; the search itself is pair_search
    search_help_text = "exchange (optional), symbol, trade id (optional), exactly: okx BTC-USDT 42"
    trade_ids = True


@admin.register(MarketData)
class MarketDataAdmin(MarketDataListAdmin):
    list_display = ["time", "exchange", "symbol", "data_type", "created"]
    list_filter = [
        time_window_filter("timestamp"),
        PairFilter,
        fixed_choices_filter("data_type", "data type", MARKET_DATA_TYPES),
    ]
    search_fields = ["symbol"]

    @admin.display(description="stored (UTC)")
    def created(self, row) -> str:
        return utc_with_milliseconds(row.created_at)


@admin.register(Candle)
class CandleAdmin(MarketDataListAdmin):
    list_display = [
        "time",
        "exchange",
        "symbol",
        "timeframe",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "trade_count",
        "is_final",
    ]
    list_filter = [
        time_window_filter("timestamp"),
        PairFilter,
        TimeframeFilter,
    ]
    search_fields = ["symbol"]


class BackupRecordAdmin(ReadOnlyAdmin):
    """Backups and restore drills are written by their jobs; the page title says how the
    newest stand (the same words as /api/v1/health/)."""

    def changelist_view(self, request, extra_context=None):
        status = backup_status()
        title = f"{self.model._meta.verbose_name_plural.capitalize()}: {status.detail}"
        return super().changelist_view(request, {**(extra_context or {}), "title": title})

    @admin.display(description="age")
    def age(self, obj) -> str:
        return age(getattr(obj, self.time_field), timezone.now())


@admin.register(Backup)
class BackupAdmin(BackupRecordAdmin):
    time_field = "created_at"
    list_display = [
        "created_at",
        "age",
        "file_name",
        "size",
        "rows",
        "verified",
        "removed_at",
        "error",
    ]
    list_filter = ["verified"]
    date_hierarchy = "created_at"


@admin.register(RestoreDrill)
class RestoreDrillAdmin(BackupRecordAdmin):
    time_field = "started_at"
    list_display = [
        "started_at",
        "age",
        "ok",
        "backup_file",
        "rows",
        "sampled_rows",
        "seconds",
        "detail",
    ]
    list_filter = ["ok"]
    date_hierarchy = "started_at"


# Data lifecycle (docs/data-lifecycle.md) ----------------------------------------------


@admin.register(ArchiveFile)
class ArchiveFileAdmin(ReadOnlyAdmin):
    list_display = ["day", "kind", "exchange", "rows", "size", "removed_at", "path"]
    list_filter = ["kind", "exchange"]
    date_hierarchy = "day"
    search_fields = ["=exchange", "path"]

    @admin.display(description="size", ordering="bytes")
    def size(self, record: ArchiveFile) -> str:
        return size_text(record.bytes)


@admin.register(RetentionRun)
class RetentionRunAdmin(ReadOnlyAdmin):
    list_display = ["started_at", "ok", "database_size", "archive_size", "error"]
    list_filter = ["ok"]
    date_hierarchy = "started_at"
    fields = [
        "started_at",
        "finished_at",
        "ok",
        "error",
        "database_size",
        "archive_size",
        "growth",
        "by_kind",
        "actions",
    ]
    readonly_fields = fields

    @admin.display(description="database")
    def database_size(self, run: RetentionRun) -> str:
        return size_text(run.database_bytes)

    @admin.display(description="archive")
    def archive_size(self, run: RetentionRun) -> str:
        return size_text(run.archive_bytes)

    @admin.display(description="growth per day (now)")
    def growth(self, run: RetentionRun) -> str:
        rate = growth()
        return (
            f"database {growth_text(rate.database_per_day)}, "
            f"archive {growth_text(rate.archive_per_day)}"
        )

    @admin.display(description="per kind of data")
    def by_kind(self, run: RetentionRun) -> str:
        head = mark_safe(
            "<tr><th>kind</th><th>database</th><th>oldest in database</th>"
            "<th>archive</th><th>oldest archived</th></tr>"
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    kind,
                    size_text(row.get("database_bytes")),
                    row.get("oldest_in_database") or "-",
                    size_text(row.get("archive_bytes")),
                    row.get("oldest_archived") or "-",
                )
                for kind, row in (run.storage or {}).items()
            ),
        )
        return format_html("<table>{}{}</table>", head, rows)
