"""Admin for collector configuration (exchanges, trading pairs) and collector status history."""

import logging

from django.contrib import admin, messages
from django.forms.models import BaseInlineFormSet
from django.utils.html import format_html

from collectors.exchanges.listing import check_symbols, unchecked_message, unlisted_message
from collectors.hosting import control, reconcile
from collectors.hosting.heartbeat import Heartbeat
from collectors.models import (
    AccountAccess,
    CollectorStatus,
    Exchange,
    ExchangeAccount,
    ExchangeRetention,
    TradingPair,
)
from tcp_dashboard.admin_lists import (
    LargeTableAdmin,
    fixed_choices_filter,
    time_window_filter,
    utc_with_milliseconds,
)

logger = logging.getLogger(__name__)
ERROR_SHOWN = 60  # characters of a last error in the pairs list; the rest on hover
COLLECTOR_STATUSES = ["starting", "running", "reconnecting", "error", "stopped"]


def warn_unchecked_symbol(modeladmin, request, pair: TradingPair) -> None:
    """A pair saved while its exchange could not be asked whether it lists the symbol."""
    note = getattr(pair, "symbol_check_note", "")
    if note:
        modeladmin.message_user(request, note, messages.WARNING)


class TradingPairFormSet(BaseInlineFormSet):
    """The exchange page's pairs. A pair of an exchange not stored yet cannot ask the
    exchange in its own clean(); this asks for all of them at once, as the pair would."""

    def clean(self) -> None:
        super().clean()
        exchange = self.instance
        if exchange.pk is not None:  # each pair's clean() asked already
            return
        forms = [
            form
            for form in self.forms
            if form.cleaned_data.get("symbol") and not form.cleaned_data.get("DELETE")
        ]
        symbols = [form.cleaned_data["symbol"] for form in forms]
        check = check_symbols(exchange.name, exchange.rest_url, symbols)
        for form in forms:
            if form.cleaned_data["symbol"] in check.unlisted:
                form.add_error("symbol", unlisted_message(exchange.name, [form.instance.symbol]))
            form.instance.symbol_check_note = (
                f"Symbol {form.instance.symbol} of {exchange.name} {unchecked_message(check)}"
                if check.unchecked
                else ""
            )


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
    formset = TradingPairFormSet
    extra = 0
    fields = ["symbol", "enabled", "data_types", "channels"]


class ExchangeAccountInline(admin.TabularInline):
    """Accounts, by the names of the environment variables holding their credentials; the
    credentials themselves are never stored, so never shown."""

    model = ExchangeAccount
    extra = 0
    fields = ["name", "enabled", "api_key_env", "secret_env", "passphrase_env"]


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
    inlines = [TradingPairInline, ExchangeAccountInline, ExchangeRetentionInline]

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects + [obj for obj, _ in formset.changed_objects]:
            if isinstance(obj, TradingPair):
                warn_unchecked_symbol(self, request, obj)

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
        ("Accounts", {"fields": ["private_ws_url", "demo_trading", "account_data_types"]}),
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


def live_states() -> tuple[dict[str, reconcile.CollectorState] | None, dict[str, Heartbeat]]:
    """Current state of every stream and its last heartbeat; (None, {}) when Redis cannot
    be asked."""
    try:
        seen = reconcile.observe()
    except Exception as error:  # the admin still works without Redis
        logger.warning("collector states unavailable: %s", error)
        return None, {}
    return {state.name: state for state in seen.states()}, seen.heartbeats


def message_rate(beat: Heartbeat | None) -> str:
    """Messages per second since the stream (re)started, from its last heartbeat."""
    statistics = (beat.status if beat else {}).get("statistics", {})
    try:
        rate = float(statistics.get("messages_received", 0)) / float(statistics["uptime_seconds"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return "-"
    return f"{rate:.1f}" if rate < 100 else f"{rate:,.0f}"


def last_message_age(beat: Heartbeat | None) -> str:
    """How long ago the stream's last message came, as of now."""
    if beat is None:
        return "-"
    if not beat.status.get("statistics", {}).get("last_message_time"):
        return "never"
    try:
        seconds = float(beat.status["health"]["time_since_data"]) + beat.age()
    except (KeyError, TypeError, ValueError):
        return "-"
    return short_duration(seconds)


def short_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} d ago"


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
    list_display = ["symbol", "exchange", "enabled"]  # + live state: get_list_display
    list_editable = ["enabled"]
    list_filter = ["exchange", "enabled"]
    list_select_related = ["exchange"]
    search_fields = ["symbol"]
    actions = [
        control_action("start", control.start_collector, "Start the selected collectors"),
        control_action("stop", control.stop_collector, "Stop the selected collectors"),
        control_action("restart", control.restart_collector, "Restart the selected collectors"),
    ]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        warn_unchecked_symbol(self, request, obj)

    def get_list_display(self, request):
        # One Redis read per page, shared by the rows of this request.
        states, beats = live_states()

        def state(pair):
            if states is None:
                return "unknown (no Redis)"
            current = states.get(pair.collector_name)
            return current.status if current else "stopped"

        def rate(pair):
            return message_rate(beats.get(pair.collector_name))

        def last_message(pair):
            return last_message_age(beats.get(pair.collector_name))

        def worker(pair):
            current = (states or {}).get(pair.collector_name)
            return current.worker if current else ""

        def restarts(pair):
            current = (states or {}).get(pair.collector_name)
            return current.restarts if current else 0

        def last_error(pair):
            current = (states or {}).get(pair.collector_name)
            error = current.last_error if current else ""
            if len(error) <= ERROR_SHOWN:
                return error
            return format_html('<span title="{}">{}…</span>', error, error[:ERROR_SHOWN])

        def data_types(pair):
            return ", ".join(pair.data_types or [])

        columns = {
            "state": state,
            "msg/s": rate,
            "last message": last_message,
            "worker": worker,
            "restarts": restarts,
            "last error": last_error,
            "data types": data_types,
        }
        for name, column in columns.items():
            column.short_description = name
        return ["symbol", "exchange", "enabled", *columns.values()]


class ExchangeNameFilter(admin.SimpleListFilter):
    """The configured exchanges (the default would read every row for its choices)."""

    title = "exchange"
    parameter_name = "exchange"

    def lookups(self, request, model_admin):
        return [
            (name, name)
            for name in Exchange.objects.order_by("name").values_list("name", flat=True)
        ]

    def queryset(self, request, queryset):
        return queryset.filter(exchange=self.value()) if self.value() else queryset


@admin.register(CollectorStatus)
class CollectorStatusAdmin(LargeTableAdmin):
    """The status history grows with every health check: listed newest first from its time
    index, searched by exact stream name (okx:BTC-USDT) through the name index."""

    list_display = [
        "recorded",
        "name",
        "status",
        "is_healthy",
        "should_be_running",
        "worker",
        "restarts",
        "last_error",
    ]
    list_filter = [
        time_window_filter("recorded_at"),
        ExchangeNameFilter,
        fixed_choices_filter("status", "status", COLLECTOR_STATUSES),
        "is_healthy",
    ]
    search_fields = ["name__exact"]
    search_help_text = "a stream's name, exactly: okx:BTC-USDT"
    sortable_by = ["recorded"]

    @admin.display(description="recorded (UTC)", ordering="recorded_at")
    def recorded(self, row) -> str:
        return utc_with_milliseconds(row.recorded_at)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AccountAccess)
class AccountAccessAdmin(admin.ModelAdmin):
    """Who, besides staff, may see an account's balances, positions and orders."""

    list_display = ["user", "account"]
    list_filter = ["account__exchange", "account"]
    search_fields = ["user__username", "account__name"]
