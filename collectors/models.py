"""Collector configuration edited in the admin (exchanges, trading pairs) and status history."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.functions import Now

from collectors.config.schema import (
    validate_account_fields,
    validate_exchange_fields,
    validate_trading_pair_fields,
)
from collectors.exchanges.listing import check_symbols, unchecked_message, unlisted_message
from collectors.types import COLLECTOR_DEFAULTS as DEFAULTS
from collectors.types import account_symbol

POSITIVE = [MinValueValidator(0.001)]


class Exchange(models.Model):
    """One exchange's connection settings and data-collection defaults (the spec's JSON)."""

    name = models.CharField(max_length=50, unique=True, help_text="Adapter name, e.g. okx.")
    enabled = models.BooleanField(default=True)
    # connection
    public_ws_url = models.CharField(max_length=255)
    business_ws_url = models.CharField(
        max_length=255,
        blank=True,
        help_text="Candle channels; blank derives it from the public URL.",
    )
    rest_url = models.CharField(
        max_length=255, blank=True, help_text="REST base for order-book snapshots; blank: default."
    )
    private_ws_url = models.CharField(
        max_length=255,
        blank=True,
        help_text="Account data (login); blank: OKX's private endpoint (demo or live).",
    )
    demo_trading = models.BooleanField(
        default=False, help_text="Demo trading: REST requests carry x-simulated-trading: 1."
    )
    account_data_types = models.JSONField(
        default=list,
        blank=True,
        help_text='What each account collects: ["balance", "position", "order"].',
    )
    ping_interval = models.FloatField(default=DEFAULTS["ping_interval"], validators=POSITIVE)
    pong_timeout = models.FloatField(default=DEFAULTS["pong_timeout"], validators=POSITIVE)
    max_reconnect_attempts = models.PositiveIntegerField(default=DEFAULTS["max_reconnect_attempts"])
    reconnect_delay = models.FloatField(default=DEFAULTS["reconnect_delay"], validators=POSITIVE)
    # data_collection
    store_raw_data = models.BooleanField(default=DEFAULTS["store_raw_data"])
    health_check_interval = models.FloatField(
        default=DEFAULTS["health_check_interval"], validators=POSITIVE
    )
    auto_restart = models.BooleanField(default=DEFAULTS["auto_restart"])
    buffer_size = models.PositiveIntegerField(
        default=DEFAULTS["buffer_size"], validators=[MinValueValidator(1)]
    )
    max_silence_duration = models.FloatField(
        default=DEFAULTS["max_silence_duration"], validators=POSITIVE
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.account_data_types is None:  # a blank field in the admin: none
            self.account_data_types = []
        # The same rules as the exchange configuration file.
        errors = validate_exchange_fields(self)
        if errors:
            raise ValidationError(errors)


def default_data_types() -> list[str]:
    return ["trade", "orderbook"]


def default_channels() -> dict[str, str]:
    """None named: the pair uses its exchange adapter's default channels."""
    return {}


class TradingPair(models.Model):
    """A symbol to collect on an exchange; `enabled` is the desired state."""

    exchange = models.ForeignKey(Exchange, on_delete=models.CASCADE, related_name="trading_pairs")
    symbol = models.CharField(max_length=50)
    enabled = models.BooleanField(default=True)
    data_types = models.JSONField(default=default_data_types)
    channels = models.JSONField(default=default_channels)

    class Meta:
        ordering = ["exchange__name", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol"], name="trading_pair_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange.name}:{self.symbol}"

    def clean(self) -> None:
        if self.exchange_id is None:  # a new pair inline on a new exchange: checked on save
            return
        errors = validate_trading_pair_fields(self)
        if errors:
            raise ValidationError(errors)
        self.symbol_check_note = ""
        if self.symbol_is_new():
            exchange = self.exchange
            check = check_symbols(exchange.name, exchange.rest_url, [self.symbol])
            if check.unlisted:
                raise ValidationError({"symbol": unlisted_message(exchange.name, check.unlisted)})
            if check.unchecked:
                # Saved anyway (collectors.exchanges.listing); the admin shows this warning.
                self.symbol_check_note = (
                    f"Symbol {self.symbol} of {exchange.name} {unchecked_message(check)}"
                )

    def symbol_is_new(self) -> bool:
        """Added, or its symbol or exchange changed: what the exchange must be asked about."""
        if self._state.adding or self.pk is None:
            return True
        stored = TradingPair.objects.filter(pk=self.pk).values_list("exchange_id", "symbol")
        return stored.first() != (self.exchange_id, self.symbol)

    @property
    def collector_name(self) -> str:
        return f"{self.exchange.name}:{self.symbol}"


class CollectorStatus(models.Model):
    """A recorded status of one collector (the spec's Collector Status), kept as history."""

    name = models.CharField(max_length=120)
    exchange = models.CharField(max_length=50)
    symbol = models.CharField(max_length=50)
    status = models.CharField(max_length=20)
    should_be_running = models.BooleanField()
    is_healthy = models.BooleanField()
    worker = models.CharField(max_length=255, blank=True)
    restarts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    issues = models.JSONField(default=list)
    statistics = models.JSONField(default=dict)
    health = models.JSONField(default=dict)
    recorded_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "collector_status"
        verbose_name_plural = "collector status"
        ordering = ["-recorded_at"]
        indexes = [
            models.Index(fields=["name", "-recorded_at"], name="collector_status_name_idx"),
            # The newest first (the admin's list) and retention's oldest, without a full scan.
            models.Index(fields=["-recorded_at"], name="collector_status_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.status} at {self.recorded_at:%Y-%m-%d %H:%M:%S}"


class ExchangeAccount(models.Model):
    """An account (or sub-account) on an exchange, named by the environment variables that
    hold its credentials. The credentials themselves are never stored: the collector that
    logs in reads them from its own environment."""

    exchange = models.ForeignKey(Exchange, on_delete=models.CASCADE, related_name="accounts")
    name = models.CharField(max_length=40, help_text="e.g. main, sub1.")
    enabled = models.BooleanField(default=True)
    api_key_env = models.CharField(max_length=100, help_text="Variable holding the API key.")
    secret_env = models.CharField(max_length=100, help_text="Variable holding the secret key.")
    passphrase_env = models.CharField(max_length=100, help_text="Variable holding the passphrase.")

    class Meta:
        ordering = ["exchange__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "name"], name="exchange_account_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange.name}:{self.name}"

    def clean(self) -> None:
        errors = validate_account_fields(self)
        if errors:
            raise ValidationError(errors)

    @property
    def collector_name(self) -> str:
        return f"{self.exchange.name}:{account_symbol(self.name)}"


class AccountAccess(models.Model):
    """A user who may see an account's balances, positions and orders (staff see all)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_access"
    )
    account = models.ForeignKey(ExchangeAccount, on_delete=models.CASCADE, related_name="access")

    class Meta:
        verbose_name = "account access"
        verbose_name_plural = "account access"
        constraints = [
            models.UniqueConstraint(fields=["user", "account"], name="account_access_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.user} -> {self.account}"


# The kinds of stored data that have a retention window (docs/data-lifecycle.md).
RETENTION_KINDS = [
    ("trade", "trades"),
    ("orderbook", "order books"),
    ("ticker", "tickers"),
    ("candle", "exchange candles"),
    ("balance", "balances"),
    ("candles", "candles, 1m and longer"),
    ("candles_1s", "1s candles"),
    ("collector_status", "collector status history"),
]


class ExchangeRetention(models.Model):
    """Days one kind of this exchange's data stays in the database, instead of the default."""

    exchange = models.ForeignKey(Exchange, on_delete=models.CASCADE, related_name="retention")
    kind = models.CharField(max_length=20, choices=RETENTION_KINDS)
    days = models.PositiveIntegerField(
        validators=[MinValueValidator(1)],
        help_text="Older days are archived (where the kind is archived) and removed.",
    )

    class Meta:
        verbose_name = "retention window"
        constraints = [
            models.UniqueConstraint(fields=["exchange", "kind"], name="exchange_retention_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange.name} {self.kind}: {self.days} days"


class ReplayedSpillFile(models.Model):
    """A storage sink's spill file whose rows were committed (collectors.storage.sink).

    Written in the transaction that stores the rows, so a file left on disk by a process
    that died before deleting it is recognised and never stored twice.
    """

    sink = models.CharField(max_length=100)
    file_name = models.CharField(max_length=100)
    replayed_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "storage_replayed_spill_files"
        constraints = [
            models.UniqueConstraint(fields=["sink", "file_name"], name="replayed_spill_file_once")
        ]

    def __str__(self) -> str:
        return f"{self.sink}/{self.file_name}"
