"""API views: read the query, call a selector, shape the answer. No business rules here.

The platform's health (/api/v1/health/) is answered by tcp_dashboard.health.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import APIException, NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from marketdata import selectors
from marketdata.api import params
from marketdata.api.pagination import PageRequest, encode_cursor, paginate
from marketdata.api.permissions import CanRead
from marketdata.api.renderers import CandleCSVRenderer, FastJSONRenderer
from marketdata.api.serializers import (
    CandlePageSerializer,
    CandleSerializer,
    MarketDataPageSerializer,
    MarketDataSerializer,
    OrderBookSerializer,
    TickerSerializer,
    TradePageSerializer,
    TradeSerializer,
)
from marketdata.archive import ArchiveError
from marketdata.candles import CandleValue

logger = logging.getLogger(__name__)

DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
# A 400 maps each bad parameter to what is wrong with it.
BAD_PARAMETERS = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]
    },
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    described = {
        400: OpenApiResponse(BAD_PARAMETERS, "A parameter is wrong; the body says which and why."),
        401: OpenApiResponse(DETAIL, "No or invalid credentials."),
        403: OpenApiResponse(DETAIL, "Not allowed for this user."),
        404: OpenApiResponse(DETAIL, "Nothing stored matches."),
        409: OpenApiResponse(DETAIL, "Not possible in the current state."),
        429: OpenApiResponse(DETAIL, "Too many requests; retry after Retry-After seconds."),
        503: OpenApiResponse(DETAIL, "A backing service does not answer."),
    }
    return {code: described[code] for code in codes}


def read_responses(ok: Any, *extra: int) -> dict[int, Any]:
    return {200: ok, **error_responses(400, 401, 403, 429, *extra, 503)}


class ApiView(APIView):
    """Reads for signed-in users (or everyone with API_PUBLIC_READ); errors always in JSON."""

    permission_classes = [CanRead]

    def handle_exception(self, exc: Exception) -> Response:
        # A CSV client still gets a readable reason, in JSON.
        if isinstance(getattr(self.request, "accepted_renderer", None), CandleCSVRenderer):
            self.request.accepted_renderer = FastJSONRenderer()
            self.request.accepted_media_type = FastJSONRenderer.media_type
        return super().handle_exception(exc)


def page_response(
    request: Request,
    queryset: QuerySet,
    serializer: type,
    page_request: PageRequest,
    archived: Callable | None = None,
) -> Response:
    """One page of rows, and a `next` link (also an RFC 8288 Link header) when there are more."""
    columns, as_text = serializer.COLUMNS, serializer.TEXT_COLUMNS
    page = paginate(queryset, columns, page_request, as_text=as_text, archived=archived)
    headers = {}
    next_url = None
    if page.next_cursor is not None:
        url = request.build_absolute_uri()
        next_url = replace_query_param(url, "cursor", encode_cursor(page.next_cursor))
        headers["Link"] = f'<{next_url}>; rel="next"'
    shape = serializer().to_representation
    body = {"next": next_url, "results": [shape(row) for row in page.rows]}
    return Response(body, headers=headers)


# Archived ranges (docs/data-lifecycle.md): days whose rows have left the database are
# read from the Parquet archive and merged into the page, in the same format.
class ArchiveUnavailable(APIException):
    status_code = 503
    default_code = "archive_unavailable"


def from_archive(select: Callable, query: Any, serializer: type) -> Callable:
    def rows(page: Any) -> list:
        try:
            return select(query, page, serializer.COLUMNS, serializer.TEXT_COLUMNS)
        except ArchiveError as error:
            logger.error("archive unreadable: %s (%s)", error, error.__cause__)
            raise ArchiveUnavailable(f"{error}; try again later") from error

    return rows


class TradeList(ApiView):
    @extend_schema(
        operation_id="trades_list",
        summary="Stored trades",
        description="Trades by exchange time, newest first by default, a page at a time.",
        parameters=params.trade_parameters(),
        responses=read_responses(TradePageSerializer),
        tags=["market data"],
    )
    def get(self, request: Request) -> Response:
        query, page_request = params.trade_query(request.query_params)
        old = from_archive(selectors.archived_trades, query, TradeSerializer)
        return page_response(request, selectors.trades(query), TradeSerializer, page_request, old)


class CandleList(ApiView):
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, CandleCSVRenderer]

    @extend_schema(
        operation_id="candles_list",
        summary="OHLCV candles",
        description=(
            "Candles from the candles table, oldest first by default. Only final candles "
            "unless include_partial=true. Intervals without trades have no candle unless "
            "fill=true. `format=csv` (or Accept: text/csv) answers CSV, with the next page "
            "in the Link header."
        ),
        parameters=params.candle_parameters(),
        responses={
            (200, "application/json"): CandlePageSerializer,
            (200, "text/csv"): OpenApiResponse(
                {"type": "string"},
                "CSV with a header row: " + ", ".join(CandleSerializer.CSV_HEADER),
            ),
            **error_responses(400, 401, 403, 429, 503),
        },
        tags=["market data"],
    )
    def get(self, request: Request) -> Response:
        query, page_request = params.candle_query(request.query_params)
        if query.fill:
            series = selectors.filled_candles(query)
            if page_request.descending:
                series.reverse()
            shape = CandleSerializer().to_representation
            return Response({"next": None, "results": [shape(candle_row(c)) for c in series]})
        old = from_archive(selectors.archived_candles, query, CandleSerializer)
        return page_response(request, selectors.candles(query), CandleSerializer, page_request, old)


def candle_row(candle: CandleValue) -> dict[str, Any]:
    """A candle as the rows the candle serializer takes: decimals as plain text."""
    row: dict[str, Any] = {
        "timestamp": candle.timestamp,
        "trade_count": candle.trade_count,
        "is_final": candle.is_final,
    }
    for name in CandleSerializer.TEXT_COLUMNS:
        row[name] = format(getattr(candle, name), "f")
    return row


class MarketDataList(ApiView):
    @extend_schema(
        operation_id="market_data_list",
        summary="Stored market data",
        description="Tickers, order books, exchange candles and balances, as stored.",
        parameters=params.market_data_parameters(),
        responses=read_responses(MarketDataPageSerializer),
        tags=["market data"],
    )
    def get(self, request: Request) -> Response:
        query, page_request = params.market_data_query(request.query_params)
        queryset = selectors.market_data(query)
        old = from_archive(selectors.archived_market_data, query, MarketDataSerializer)
        return page_response(request, queryset, MarketDataSerializer, page_request, old)


class OrderBookLatest(ApiView):
    @extend_schema(
        operation_id="orderbook_latest",
        summary="Latest order book",
        parameters=params.latest_parameters(),
        responses=read_responses(OrderBookSerializer, 404),
        tags=["market data"],
    )
    def get(self, request: Request) -> Response:
        query = params.latest_query(request.query_params)
        point = selectors.latest_order_book(query.exchange, query.symbol, query.as_of)
        if point is None:
            raise NotFound(f"no order book stored for {query.exchange} {query.symbol}")
        return Response(OrderBookSerializer(point).data)


class TickerLatest(ApiView):
    @extend_schema(
        operation_id="ticker_latest",
        summary="Latest ticker",
        parameters=params.latest_parameters(),
        responses=read_responses(TickerSerializer, 404),
        tags=["market data"],
    )
    def get(self, request: Request) -> Response:
        query = params.latest_query(request.query_params)
        point = selectors.latest_ticker(query.exchange, query.symbol, query.as_of)
        if point is None:
            raise NotFound(f"no ticker stored for {query.exchange} {query.symbol}")
        return Response(TickerSerializer(point).data)


class NotFoundView(APIView):
    """No such API path: a JSON 404 for every method, whoever asks."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = []
    schema = None

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        raise NotFound("no such API path; see /api/v1/docs/")
