"""Stored market data (`market_data`, `raw_trades`) and the candles derived from it."""

from django.db import models
from django.db.models.functions import Now

PRICE = {"max_digits": 20, "decimal_places": 8}


class TransactionNow(Now):
    """`now()` on PostgreSQL, as the spec's schema says (Django's Now is statement_timestamp())."""

    def as_postgresql(self, compiler, connection, **extra_context):
        return "now()", []


class MarketData(models.Model):
    """Every data point that is not a trade: tickers, order books, exchange candles, balances."""

    id = models.BigAutoField(primary_key=True)
    exchange = models.CharField(max_length=50)
    symbol = models.CharField(max_length=50)
    data_type = models.CharField(max_length=20)
    timestamp = models.DateTimeField()
    data = models.JSONField()
    created_at = models.DateTimeField(null=True, db_default=TransactionNow())

    class Meta:
        db_table = "market_data"
        verbose_name_plural = "market data"
        indexes = [
            models.Index(
                fields=["exchange", "symbol", "timestamp"], name="market_data_exch_sym_ts_idx"
            ),
            models.Index(fields=["data_type", "timestamp"], name="market_data_type_ts_idx"),
            # The newest rows of every type at once (the admin's list), without a full scan.
            models.Index(fields=["timestamp"], name="market_data_ts_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange} {self.symbol} {self.data_type} {self.timestamp.isoformat()}"


class RawTrade(models.Model):
    """Every trade once: unique per exchange, symbol and trade id."""

    id = models.BigAutoField(primary_key=True)
    exchange = models.CharField(max_length=50)
    symbol = models.CharField(max_length=50)
    # Nullable as the spec says: a trade without an id is never deduplicated.
    trade_id = models.CharField(max_length=100, null=True)  # noqa: DJ001
    price = models.DecimalField(**PRICE)
    size = models.DecimalField(**PRICE)
    side = models.CharField(max_length=10)
    timestamp = models.DateTimeField()
    raw_data = models.JSONField(null=True)
    created_at = models.DateTimeField(null=True, db_default=TransactionNow())

    class Meta:
        db_table = "raw_trades"
        constraints = [
            models.UniqueConstraint(
                fields=["exchange", "symbol", "trade_id"], name="raw_trades_exch_sym_trade_uniq"
            ),
        ]
        indexes = [
            models.Index(
                fields=["exchange", "symbol", "timestamp"], name="raw_trades_exch_sym_ts_idx"
            ),
            models.Index(fields=["timestamp"], name="raw_trades_ts_idx"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.exchange} {self.symbol} #{self.trade_id} {self.side} {self.size}@{self.price}"
        )


class Candle(models.Model):
    """An OHLCV candle stamped at the END of its interval: it covers T - W <= ts < T."""

    id = models.BigAutoField(primary_key=True)
    exchange = models.CharField(max_length=50)
    symbol = models.CharField(max_length=50)
    timeframe = models.CharField(max_length=8)
    timestamp = models.DateTimeField(help_text="End of the interval (exclusive).")
    open = models.DecimalField(**PRICE)
    high = models.DecimalField(**PRICE)
    low = models.DecimalField(**PRICE)
    close = models.DecimalField(**PRICE)
    volume = models.DecimalField(max_digits=30, decimal_places=8)
    quote_volume = models.DecimalField(max_digits=38, decimal_places=16)
    vwap = models.DecimalField(**PRICE)
    trade_count = models.PositiveIntegerField()
    is_final = models.BooleanField(default=False)
    created_at = models.DateTimeField(db_default=TransactionNow())
    updated_at = models.DateTimeField(db_default=TransactionNow())

    class Meta:
        db_table = "candles"
        constraints = [
            models.UniqueConstraint(
                fields=["exchange", "symbol", "timeframe", "timestamp"],
                name="candles_exch_sym_tf_ts_uniq",
            ),
        ]
        # Retention finds each timeframe's old candles (1s ones leave after days) by this.
        indexes = [models.Index(fields=["timeframe", "timestamp"], name="candles_tf_ts_idx")]

    def __str__(self) -> str:
        return f"{self.exchange} {self.symbol} {self.timeframe} {self.timestamp.isoformat()}"


class Backup(models.Model):
    """One run of the backup job: the file it wrote, or why it failed (docs/backups.md)."""

    created_at = models.DateTimeField(help_text="The moment of the database the dump holds.")
    file_name = models.CharField(max_length=255, blank=True)
    size = models.BigIntegerField(null=True, help_text="Bytes of the encrypted file.")
    sha256 = models.CharField(max_length=64, blank=True)
    tables = models.PositiveIntegerField(default=0)
    rows = models.BigIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    verified = models.BooleanField(
        default=False, help_text="Read back, decrypted and checked against its manifest."
    )
    error = models.TextField(blank=True)
    removed_at = models.DateTimeField(null=True, help_text="When rotation deleted the file.")

    class Meta:
        db_table = "backups"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["verified", "created_at"], name="backups_verified_idx")]

    def __str__(self) -> str:
        return self.file_name or f"failed backup {self.created_at.isoformat()}"


class RestoreDrill(models.Model):
    """One restore drill: the newest backup restored into a scratch database and checked."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True)
    backup_file = models.CharField(max_length=255, blank=True)
    backup_created_at = models.DateTimeField(null=True)
    ok = models.BooleanField(default=False)
    tables = models.PositiveIntegerField(default=0)
    rows = models.BigIntegerField(default=0)
    sampled_rows = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    detail = models.TextField(blank=True)

    class Meta:
        db_table = "restore_drills"
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["ok", "started_at"], name="restore_drills_ok_idx")]

    def __str__(self) -> str:
        outcome = "passed" if self.ok else "failed"
        return f"restore drill {self.started_at.isoformat()} {outcome}"


class ArchiveFile(models.Model):
    """One Parquet file of the archive: one kind of data, one exchange, one UTC day."""

    kind = models.CharField(max_length=20)
    exchange = models.CharField(max_length=50)
    day = models.DateField()
    path = models.CharField(max_length=255, help_text="Relative to ARCHIVE_DIR.")
    rows = models.BigIntegerField()
    bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    first_timestamp = models.DateTimeField(null=True)
    last_timestamp = models.DateTimeField(null=True)
    written_at = models.DateTimeField()
    removed_at = models.DateTimeField(
        null=True, blank=True, help_text="When its rows began to leave the database."
    )

    class Meta:
        db_table = "archive_files"
        ordering = ["-day", "kind", "exchange"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "exchange", "day"], name="archive_file_uniq"),
        ]

    def __str__(self) -> str:
        return self.path


class RetentionRun(models.Model):
    """One run of the retention task: what it did, whether it failed, and the storage then."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True)
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    actions = models.JSONField(default=list, help_text="What was archived and removed.")
    database_bytes = models.BigIntegerField(null=True)
    archive_bytes = models.BigIntegerField(null=True)
    storage = models.JSONField(
        default=dict, help_text="Per kind of data: bytes in the database and archive, oldest day."
    )

    class Meta:
        db_table = "retention_runs"
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"retention {self.started_at:%Y-%m-%d %H:%M} {'ok' if self.ok else 'failed'}"
