"""Admin list pages that stay fast on tables of tens of millions of rows.

No full count (PostgreSQL's estimate for an unfiltered list, a count that stops at
COUNT_CAP rows for a filtered one), no page deeper than MAX_PAGES, a LIMIT on every read,
sorting on the allowed columns only, and filters whose choices are fixed or come from the
configuration instead of a DISTINCT over the table (docs/security.md).
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connection
from django.utils import timezone
from django.utils.functional import cached_property

COUNT_CAP = 10_000  # a filtered count stops here; beyond it, the planner's estimate is shown
MAX_PAGES = 100  # deeper pages would read OFFSET rows; narrow the list with filters instead


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
    """The planner's row count of a table; a partitioned table's is its partitions' sum."""
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


class BoundedChangeList(ChangeList):
    def get_ordering_field(self, field_name):
        """Only the sortable columns, even in a hand-made ?o= (a sort on price reads all)."""
        if self.sortable_by is not None and field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    def get_results(self, request) -> None:
        """A list short enough for one page is still read with a LIMIT: rows keep arriving
        between the count and the read."""
        super().get_results(request)
        if not self.multi_page or self.show_all:
            self.result_list = self.result_list[: self.list_max_show_all]


class LargeTableAdmin(admin.ModelAdmin):
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 100

    def get_changelist(self, request, **kwargs):
        return BoundedChangeList


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
    ChoicesFilter.__name__ = f"{field.title().replace('_', '')}Filter"
    return ChoicesFilter


def time_window_filter(field: str) -> type[admin.SimpleListFilter]:
    """The newest rows only, instead of a date drill-down (which reads every row's date)."""

    windows = {
        "1h": ("last hour", timedelta(hours=1)),
        "1d": ("last 24 hours", timedelta(days=1)),
        "7d": ("last 7 days", timedelta(days=7)),
        "30d": ("last 30 days", timedelta(days=30)),
    }

    class TimeWindowFilter(admin.SimpleListFilter):
        title = "time"
        parameter_name = "within"

        def lookups(self, request, model_admin):
            return [(key, label) for key, (label, _) in windows.items()]

        def queryset(self, request, queryset):
            window = windows.get(self.value() or "")
            if window:
                return queryset.filter(**{f"{field}__gte": timezone.now() - window[1]})
            return queryset

    return TimeWindowFilter


def utc_with_milliseconds(moment) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
