"""Admin for stored market data: read-only, with list pages that stay fast on large tables."""

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from marketdata.backups.status import age, backup_status
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


class EstimatedCountPaginator(Paginator):
    """PostgreSQL's row estimate for unfiltered lists: COUNT(*) of millions of rows is slow."""

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if connection.vendor == "postgresql" and not query.where:
            # A partitioned table's estimate is the sum of its partitions'.
            with connection.cursor() as cursor:
                cursor.execute(
                    """SELECT sum(greatest(c.reltuples, 0))::bigint
                    FROM pg_partition_tree(%s::regclass) t JOIN pg_class c ON c.oid = t.relid
                    WHERE t.isleaf""",
                    [self.object_list.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] and row[0] > 10_000:
                return row[0]
        return super().count


class ReadOnlyAdmin(admin.ModelAdmin):
    """Stored data is written by collectors, rollups and retention only."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    date_hierarchy = "timestamp"
    list_per_page = 100

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RawTrade)
class RawTradeAdmin(ReadOnlyAdmin):
    list_display = ["timestamp", "exchange", "symbol", "trade_id", "side", "price", "size"]
    list_filter = ["exchange", "side"]
    search_fields = ["=symbol", "=trade_id"]


@admin.register(MarketData)
class MarketDataAdmin(ReadOnlyAdmin):
    list_display = ["timestamp", "exchange", "symbol", "data_type", "created_at"]
    list_filter = ["exchange", "data_type"]
    search_fields = ["=symbol"]


@admin.register(Candle)
class CandleAdmin(ReadOnlyAdmin):
    list_display = [
        "timestamp",
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
    list_filter = ["exchange", "timeframe", "is_final"]
    search_fields = ["=symbol"]


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
