"""The dashboard's pages (thin views over selectors) and their live streams (Server-Sent Events)."""

from __future__ import annotations

import asyncio

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import connections
from django.http import (
    Http404,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.views.decorators.http import require_GET

from collectors.hosting.live_candles import candle_channel
from collectors.hosting.live_feed import book_channel, ticker_channel, trade_channel
from dashboard import hub, selectors
from dashboard.access import may_control, may_read, reader_required
from marketdata.accounts import account_tables
from marketdata.candles import TIMEFRAMES

KEEPALIVE = 15.0  # seconds between comments on a quiet stream, so proxies keep it open
RETRY_MS = 2000  # how soon a browser reconnects a dropped stream
CHART_BARS = 300  # intervals of history a chart starts with


def live_mode() -> dict:
    """How this server's pages get their live updates, for the page to say."""
    if settings.REDIS_URL:
        return {"mode": "redis", "label": "live"}
    return {
        "mode": "database",
        "label": f"embedded mode (no Redis): updates every {hub.POLL_EVERY:g} s from the database",
    }


def page_context(request, nav: str, initial: dict, **context) -> dict:
    return {
        "nav": nav,
        "initial": initial,
        "live": live_mode(),
        "can_control": may_control(request.user),
        "timeframes": list(TIMEFRAMES),
        **context,
    }


@require_GET
@reader_required
def board(request):
    initial = {
        "board": selectors.board_snapshot(),
        "collectors": selectors.collector_board().as_dict(),
    }
    return render(request, "dashboard/board.html", page_context(request, "board", initial))


@require_GET
@reader_required
def market(request, exchange: str, symbol: str):
    found = selectors.market(exchange, symbol)
    if found is None:
        raise Http404(f"no market {exchange}:{symbol} is configured")
    timeframe = request.GET.get("timeframe", "1m")
    if timeframe not in TIMEFRAMES:
        timeframe = "1m"
    initial = {
        "exchange": exchange,
        "symbol": symbol,
        "timeframe": timeframe,
        "bars": CHART_BARS,
        "trades": selectors.recent_trades(exchange, symbol),
        "book": selectors.latest_book(exchange, symbol),
        "ticker": selectors.latest_ticker(exchange, symbol),
    }
    return render(
        request,
        "dashboard/market.html",
        page_context(request, "board", initial, market=found, timeframe=timeframe),
    )


@require_GET
def accounts(request):
    """Balances, positions and orders of the accounts this user may see; never public."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    context = page_context(request, "accounts", {}, accounts=account_tables(request.user))
    return render(request, "dashboard/accounts.html", context)


@require_GET
@reader_required
def collectors(request):
    initial = selectors.collector_board().as_dict()
    context = page_context(request, "collectors", initial)
    return render(request, "dashboard/collectors.html", context)


# live streams -----------------------------------------------------------------------------


async def events(live: hub.Hub, viewer: hub.Viewer):
    """The stream a browser reads: a hello, then whatever the hub hands this viewer."""
    try:
        hello = {**live_mode(), "interrupted": live.interrupted}
        yield f"retry: {RETRY_MS}\n".encode() + hub.sse("hello", orjson.dumps(hello))
        while True:
            try:
                await asyncio.wait_for(viewer.ready.wait(), KEEPALIVE)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if viewer.overflowed:
                return  # too far behind: the browser reconnects and starts afresh
            yield viewer.take()
            await asyncio.sleep(viewer.pace)
    finally:
        live.unsubscribe(viewer)


async def stream(request, topics, pace: float = 0.1):
    live = hub.get_hub()
    viewer = hub.Viewer(pace=pace)
    live.subscribe(viewer, topics)
    response = StreamingHttpResponse(events(live, viewer), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy in front must not hold events back
    return response


async def reader(request):
    """The user, when allowed to read the dashboard; None otherwise."""
    user = await request.auser()
    allowed = may_read(user, request.method)
    return user if allowed else None


async def release_connections() -> None:
    """A stream lives for hours: it must not hold the database connection its login used."""
    await sync_to_async(connections.close_all)()


@require_GET
async def board_stream(request):
    if await reader(request) is None:
        await release_connections()
        return HttpResponseForbidden("sign in to watch the board")
    markets = await sync_to_async(selectors.markets)()
    await release_connections()
    topics = [(hub.BOARD, hub.snapshot_event), (hub.COLLECTORS, hub.snapshot_event)]
    topics += [(trade_channel(m.exchange, m.symbol), hub.tick_event) for m in markets]
    return await stream(request, topics, pace=0.25)


@require_GET
async def market_stream(request, exchange: str, symbol: str):
    if await reader(request) is None:
        await release_connections()
        return HttpResponseForbidden("sign in to watch this market")
    found = await sync_to_async(selectors.market)(exchange, symbol)
    await release_connections()
    if found is None:
        raise Http404(f"no market {exchange}:{symbol} is configured")
    timeframe = request.GET.get("timeframe", "1m")
    if timeframe not in TIMEFRAMES:
        return HttpResponseBadRequest(f"timeframe must be one of {', '.join(TIMEFRAMES)}")
    topics = [
        (candle_channel(exchange, symbol, timeframe), hub.candle_event),
        (trade_channel(exchange, symbol), hub.trades_event),
        (book_channel(exchange, symbol), hub.book_event),
        (ticker_channel(exchange, symbol), hub.ticker_event),
    ]
    return await stream(request, topics)


@require_GET
async def collectors_stream(request):
    if await reader(request) is None:
        await release_connections()
        return HttpResponseForbidden("sign in to watch the collectors")
    await release_connections()
    return await stream(request, [(hub.COLLECTORS, hub.snapshot_event)], pace=0.25)
