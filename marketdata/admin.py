"""Admin for stored market data: read-only, with list pages that stay fast on large tables."""

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property

from marketdata.models import Candle, MarketData, RawTrade


class EstimatedCountPaginator(Paginator):
    """PostgreSQL's row estimate for unfiltered lists: COUNT(*) of millions of rows is slow."""

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if connection.vendor == "postgresql" and not query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [self.object_list.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] > 10_000:
                return row[0]
        return super().count


class ReadOnlyAdmin(admin.ModelAdmin):
    """Stored data is written by collectors and rollups only."""

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
