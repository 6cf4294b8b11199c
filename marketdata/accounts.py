"""Account records (balances, positions, orders) as of a moment, for the users who may see them.

Staff see every account; anyone else only the accounts an AccountAccess grants them. The
rows are `market_data` points of the account types, each naming its account in
data["account"]; the current record of a currency, position or order is its newest one.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db.models import F, Q
from django.db.models.fields.json import KT

from collectors.models import AccountAccess
from marketdata.models import MarketData
from marketdata.selectors import CLOCK_SKEW

# what the API calls each kind -> its data type, and what tells one record from another
ACCOUNT_KINDS = {"balances": "balance", "positions": "position", "orders": "order"}
RECORD_KEY = {"balance": "symbol", "position": "symbol", "order": "order_id"}
MAX_RECORDS = 500


def visible_accounts(user) -> list[tuple[str, str]] | None:
    """(exchange, account) pairs the user may see; None for all of them (staff)."""
    if not user or not user.is_authenticated:
        return []
    if user.is_staff:
        return None
    granted = AccountAccess.objects.filter(user=user, account__enabled=True)
    return sorted(granted.values_list("account__exchange__name", "account__name"))


def account_records(
    data_type: str,
    accounts: list[tuple[str, str]] | None,
    *,
    exchange: str | None = None,
    account: str | None = None,
    as_of: datetime | None = None,
) -> list[MarketData]:
    """The newest record of each currency, position or order of the given accounts (None:
    all), as the platform had them at `as_of` (now if None), by account then symbol."""
    if accounts is not None and not accounts:
        return []
    key = RECORD_KEY[data_type]
    record = F("symbol") if key == "symbol" else KT(f"data__{key}")
    queryset = MarketData.objects.filter(data_type=data_type).annotate(
        account=KT("data__account"), record=record
    )
    if accounts is not None:
        allowed = Q()
        for exchange_name, account_name in accounts:
            allowed |= Q(exchange=exchange_name, account=account_name)
        queryset = queryset.filter(allowed)
    if exchange is not None:
        queryset = queryset.filter(exchange=exchange)
    if account is not None:
        queryset = queryset.filter(account=account)
    if as_of is not None:
        queryset = queryset.filter(created_at__lte=as_of, timestamp__lte=as_of + CLOCK_SKEW)
    newest = queryset.order_by("exchange", "account", "record", "-timestamp", "-id").distinct(
        "exchange", "account", "record"
    )
    records = list(newest[:MAX_RECORDS])
    if data_type == "position":  # a closed position is no longer one
        records = [row for row in records if is_open(row.data.get("position"))]
    if data_type == "order":
        records.sort(key=lambda row: (row.timestamp, row.id), reverse=True)
    return records


def is_open(position) -> bool:
    try:
        return Decimal(str(position)) != 0
    except (InvalidOperation, ValueError):
        return False


def account_tables(user, as_of: datetime | None = None) -> list[dict]:
    """Per visible account: its balances, positions and orders, for a page to show."""
    visible = visible_accounts(user)
    tables: dict[tuple[str, str], dict] = {}
    for data_type in ("balance", "position", "order"):
        for row in account_records(data_type, visible, as_of=as_of):
            key = (row.exchange, row.data.get("account", ""))
            table = tables.setdefault(
                key,
                {"exchange": key[0], "account": key[1], "balance": [], "position": [], "order": []},
            )
            table[data_type].append({"symbol": row.symbol, "timestamp": row.timestamp, **row.data})
    return [tables[key] for key in sorted(tables)]
