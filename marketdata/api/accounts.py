"""Account endpoints: balances/, positions/, orders/ as of a moment, for whoever may see them.

Never public (API_PUBLIC_READ opens market data only): a signed-in user sees the accounts
granted to them, staff see all. No credential is stored, so none can be served.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from collectors.times import utc_text
from marketdata.accounts import account_records, visible_accounts
from marketdata.api import params
from marketdata.api.views import ApiView, read_responses

FIELDS = {
    "balance": ("currency", "equity", "available", "frozen", "cash", "source"),
    "position": (
        "inst_type",
        "position_side",
        "position",
        "avg_price",
        "mark_price",
        "unrealized_pnl",
        "margin_mode",
        "source",
    ),
    "order": (
        "order_id",
        "client_order_id",
        "side",
        "order_type",
        "price",
        "size",
        "state",
        "filled_size",
        "fill_price",
        "avg_price",
    ),
}


class AccountRecordSerializer(serializers.Serializer):
    exchange = serializers.CharField()
    account = serializers.CharField()
    symbol = serializers.CharField(help_text="Currency (balances) or instrument.")
    timestamp = serializers.DateTimeField()
    data = serializers.DictField(help_text="The record's fields; decimals as strings.")


class AccountAnswerSerializer(serializers.Serializer):
    as_of = serializers.DateTimeField(allow_null=True)
    results = AccountRecordSerializer(many=True)


def record(row: Any) -> dict[str, Any]:
    data = row.data
    return {
        "exchange": row.exchange,
        "account": data.get("account", ""),
        "symbol": row.symbol,
        "timestamp": utc_text(row.timestamp),
        "data": {name: data.get(name) for name in FIELDS[row.data_type]},
    }


ACCOUNT_PARAMETERS = [
    params._query("exchange", OpenApiTypes.STR, "Only this exchange's accounts."),
    params._query("account", OpenApiTypes.STR, "Only this account (e.g. main, sub1)."),
    params.AS_OF,
]


class AccountRecordList(ApiView):
    """The newest record of each item of the accounts this user may see."""

    permission_classes = [IsAuthenticated]
    data_type = ""

    def records(self, request: Request) -> Response:
        reader = params.QueryReader(request.query_params, ("exchange", "account", "as_of"))
        exchange = reader.exchange()
        account = reader.text("account")
        as_of = reader.time("as_of")
        reader.done()
        rows = account_records(
            self.data_type,
            visible_accounts(request.user),
            exchange=exchange,
            account=account,
            as_of=as_of,
        )
        answer = {"as_of": utc_text(as_of) if as_of else None}
        return Response({**answer, "results": [record(row) for row in rows]})


def schema(data_type: str, summary: str):
    return extend_schema(
        operation_id=f"{data_type}_list",
        summary=summary,
        parameters=ACCOUNT_PARAMETERS,
        responses=read_responses(AccountAnswerSerializer),
        tags=["accounts"],
    )


class BalanceList(AccountRecordList):
    data_type = "balance"

    @schema("balance", "Balances per currency")
    def get(self, request: Request) -> Response:
        return self.records(request)


class PositionList(AccountRecordList):
    data_type = "position"

    @schema("position", "Open positions")
    def get(self, request: Request) -> Response:
        return self.records(request)


class OrderList(AccountRecordList):
    data_type = "order"

    @schema("order", "Orders, newest first")
    def get(self, request: Request) -> Response:
        return self.records(request)
