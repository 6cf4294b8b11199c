"""Routes of /api/v1/."""

from django.urls import path, re_path

from marketdata.api import accounts, views
from marketdata.api import collectors as collectors_api

app_name = "api"

urlpatterns = [
    path("trades/", views.TradeList.as_view(), name="trades"),
    path("candles/", views.CandleList.as_view(), name="candles"),
    path("market-data/", views.MarketDataList.as_view(), name="market-data"),
    path("orderbook/latest/", views.OrderBookLatest.as_view(), name="orderbook-latest"),
    path("ticker/latest/", views.TickerLatest.as_view(), name="ticker-latest"),
    path("balances/", accounts.BalanceList.as_view(), name="balances"),
    path("positions/", accounts.PositionList.as_view(), name="positions"),
    path("orders/", accounts.OrderList.as_view(), name="orders"),
    path("collectors/", collectors_api.CollectorList.as_view(), name="collectors"),
    path(
        "collectors/<str:name>/health/",
        collectors_api.CollectorHealth.as_view(),
        name="collector-health",
    ),
    path(
        "collectors/<str:name>/start/",
        collectors_api.CollectorStart.as_view(),
        name="collector-start",
    ),
    path(
        "collectors/<str:name>/stop/", collectors_api.CollectorStop.as_view(), name="collector-stop"
    ),
    path(
        "collectors/<str:name>/restart/",
        collectors_api.CollectorRestart.as_view(),
        name="collector-restart",
    ),
    # Anything else under /api/v1/ ending in a slash: a JSON 404, as API clients expect.
    re_path(r"^.*/$", views.NotFoundView.as_view()),
]
