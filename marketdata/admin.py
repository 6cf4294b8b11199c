"""Admin for stored market data: read-only, with list and search pages that stay fast on
tables of tens of millions of rows (docs/security.md, "The admin on large tables").

Every query a page runs is bounded by an index: filter choices come from the configuration
or are fixed (never a DISTINCT over the table), the search goes through the trading pairs'
index, the count is PostgreSQL's estimate or a count that stops at COUNT_CAP rows, pages
stop at MAX_PAGES, and a time window replaces the date drill-down.
"""

import json
from datetime import UTC, timedelta

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connection
from django.utils import timezone
from django.utils.functional import cached_property
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

COUNT_CAP = 10_000  # a filtered count stops here; beyond it, the planner's estimate is shown
MAX_PAGES = 100  # deeper pages would read OFFSET rows; narrow the list with filters instead
MAX_PAIR_CHOICES = 500


class EstimatedCountPaginator(Paginator):
    """Counts without reading the table: PostgreSQL's row estimate for an unfiltered list
    (COUNT(*) of millions of rows takes seconds), and for a filtered one a count that stops
    after COUNT_CAP rows, with the planner's estimate when it reaches it."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if connection.vendor != "postgresql":
            return super().count
        if not queryset.query.where:
            estimate = table_estimate(queryset.model._meta.db_table)
            if estimate > COUNT_CAP:
                return estimate
        counted = queryset.order_by()[: COUNT_CAP + 1].count()
        if counted <= COUNT_CAP:
            return counted
        return max(plan_estimate(queryset), counted)

    @cached_property
    def num_pages(self) -> int:
        return min(super().num_pages, MAX_PAGES)


def table_estimate(table: str) -> int:
    """A partitioned table's estimate is the sum of its partitions'."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT sum(greatest(c.reltuples, 0))::bigint
            FROM pg_partition_tree(%s::regclass) t JOIN pg_class c ON c.oid = t.relid
            WHERE t.isleaf""",
            [table],
        )
        row = cursor.fetchone()
    return int(row[0] or 0) if row else 0


def plan_estimate(queryset) -> int:
    plan = queryset.order_by().explain(format="json")
    return int(json.loads(plan)[0]["Plan"]["Plan Rows"])


def fixed_choices_filter(field: str, title: str, choices) -> type[admin.SimpleListFilter]:
    """A filter on `field` with fixed choices (the default asks the table for them)."""

    class ChoicesFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request, model_admin):
            return [(value, value) for value in choices]

        def queryset(self, request, queryset):
            if self.value():
                return queryset.filter(**{field: self.value()})
            return queryset

    ChoicesFilter.title = title
    ChoicesFilter.__name__ = f"{field.title()}Filter"
    return ChoicesFilter


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


class TimeWindowFilter(admin.SimpleListFilter):
    """The newest rows only, instead of a date drill-down (which reads every row's date)."""

    title = "time"
    parameter_name = "within"
    WINDOWS = {
        "1h": ("last hour", timedelta(hours=1)),
        "1d": ("last 24 hours", timedelta(days=1)),
        "7d": ("last 7 days", timedelta(days=7)),
        "30d": ("last 30 days", timedelta(days=30)),
    }

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in self.WINDOWS.items()]

    def queryset(self, request, queryset):
        window = self.WINDOWS.get(self.value() or "")
        if window:
            return queryset.filter(timestamp__gte=timezone.now() - window[1])
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


def utc_with_milliseconds(moment) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class BoundedChangeList(ChangeList):
    """A list short enough for one page is still read with a LIMIT: rows keep arriving
    between the count and the read."""

    def get_ordering_field(self, field_name):
        """Only the sortable columns, even in a hand-made ?o= (a sort on price reads all)."""
        if self.sortable_by is not None and field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    def get_results(self, request) -> None:
        super().get_results(request)
        if not self.multi_page or self.show_all:
            self.result_list = self.result_list[: self.list_max_show_all]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Stored data is written by collectors, rollups and retention only."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 100

    def get_changelist(self, request, **kwargs):
        return BoundedChangeList

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
        TimeWindowFilter,
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
        TimeWindowFilter,
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
        TimeWindowFilter,
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
