"""Admin for collector configuration (exchanges, trading pairs) and collector status history."""

import logging

from django.contrib import admin, messages

from collectors.hosting import control, reconcile
from collectors.models import CollectorStatus, Exchange, ExchangeRetention, TradingPair

logger = logging.getLogger(__name__)


class AppliesAtOnce:
    """Saving or deleting here reconciles the collectors with the new configuration at once
    (after the change is committed), instead of at the next health check; the message says
    what that did."""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        request.collectors_changed = True

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        request.collectors_changed = True

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        request.collectors_changed = True

    def changeform_view(self, request, *args, **kwargs):
        return self.applying(request, super().changeform_view(request, *args, **kwargs))

    def changelist_view(self, request, *args, **kwargs):
        return self.applying(request, super().changelist_view(request, *args, **kwargs))

    def delete_view(self, request, *args, **kwargs):
        return self.applying(request, super().delete_view(request, *args, **kwargs))

    def applying(self, request, response):
        # The views' own transactions are committed by now, so workers read the new state.
        if getattr(request, "collectors_changed", False):
            request.collectors_changed = False
            applied = reconcile.apply_configuration_now()
            self.message_user(request, applied.message, applied.level)
        return response


class TradingPairInline(admin.TabularInline):
    model = TradingPair
    extra = 0
    fields = ["symbol", "enabled", "data_types", "channels"]


class ExchangeRetentionInline(admin.TabularInline):
    """Days in the database per kind of data, where this exchange differs from the defaults."""

    model = ExchangeRetention
    extra = 0
    fields = ["kind", "days"]


@admin.register(Exchange)
class ExchangeAdmin(AppliesAtOnce, admin.ModelAdmin):
    list_display = [
        "name",
        "enabled",
        "public_ws_url",
        "auto_restart",
        "store_raw_data",
        "health_check_interval",
        "buffer_size",
    ]
    list_filter = ["enabled", "auto_restart"]
    search_fields = ["name"]
    inlines = [TradingPairInline, ExchangeRetentionInline]
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        (
            "Connection",
            {
                "fields": [
                    "public_ws_url",
                    "business_ws_url",
                    "rest_url",
                    "ping_interval",
                    "pong_timeout",
                    "max_reconnect_attempts",
                    "reconnect_delay",
                ]
            },
        ),
        (
            "Data collection",
            {
                "fields": [
                    "store_raw_data",
                    "health_check_interval",
                    "auto_restart",
                    "buffer_size",
                    "max_silence_duration",
                ]
            },
        ),
    ]


def live_states() -> dict[str, reconcile.CollectorState] | None:
    """Current state of every stream from the heartbeats; None when Redis cannot be asked."""
    try:
        return {state.name: state for state in reconcile.collector_states()}
    except Exception as error:  # the admin still works without Redis
        logger.warning("collector states unavailable: %s", error)
        return None


def control_action(action: str, control, description: str):
    def run(modeladmin, request, queryset):
        for pair in queryset.select_related("exchange"):
            try:
                sent = control(pair.collector_name)
            except Exception as error:  # one pair's failure must not hide the others
                modeladmin.message_user(request, f"{pair}: {error}", messages.ERROR)
                continue
            modeladmin.message_user(request, f"{pair}: {sent.summary()}")

    run.__name__ = f"{action}_collectors"
    run.short_description = description
    return run


@admin.register(TradingPair)
class TradingPairAdmin(AppliesAtOnce, admin.ModelAdmin):
    list_display = ["symbol", "exchange", "enabled", "data_types", "channels"]  # + live state
    list_editable = ["enabled"]
    list_filter = ["exchange", "enabled"]
    list_select_related = ["exchange"]
    search_fields = ["symbol"]
    actions = [
        control_action("start", control.start_collector, "Start the selected collectors"),
        control_action("stop", control.stop_collector, "Stop the selected collectors"),
        control_action("restart", control.restart_collector, "Restart the selected collectors"),
    ]

    def get_list_display(self, request):
        # One Redis read per page, shared by the rows of this request.
        states = live_states()

        def state(pair):
            if states is None:
                return "unknown (no Redis)"
            current = states.get(pair.collector_name)
            return current.status if current else "stopped"

        def worker(pair):
            current = (states or {}).get(pair.collector_name)
            return current.worker if current else ""

        def restarts(pair):
            current = (states or {}).get(pair.collector_name)
            return current.restarts if current else 0

        def last_error(pair):
            current = (states or {}).get(pair.collector_name)
            return current.last_error if current else ""

        columns = {"state": state, "worker": worker, "restarts": restarts, "last_error": last_error}
        for name, column in columns.items():
            column.short_description = name.replace("_", " ")
        return ["symbol", "exchange", "enabled", *columns.values(), "data_types", "channels"]


@admin.register(CollectorStatus)
class CollectorStatusAdmin(admin.ModelAdmin):
    list_display = [
        "recorded_at",
        "name",
        "status",
        "is_healthy",
        "should_be_running",
        "worker",
        "restarts",
        "last_error",
    ]
    list_filter = ["status", "is_healthy", "exchange"]
    search_fields = ["name", "worker"]
    date_hierarchy = "recorded_at"
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
