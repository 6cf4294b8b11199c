"""The API at its edges: times out of range are 400s naming the parameter, a filled series
never invents a final candle the real clock has not closed, and no hostile value answers 500."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from marketdata.models import Candle

pytestmark = pytest.mark.django_db

PAIR = {"exchange": "okx", "symbol": "BTC-USDT"}
OUT_OF_RANGE_TIMES = [
    "9999-12-31T23:59:59.999999Z",
    "253402300799999",
    "9999-12-31",
    "3000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "1969-12-31T23:59:59.999Z",
]
NOT_TIMES = ["0000-01-01T00:00:00Z", "-1", "-62135596800000", "1e309", "NaN", "2024-13-01"]
TIME_ENDPOINTS = {
    "/api/v1/trades/": {},
    "/api/v1/market-data/": {"data_type": "ticker"},
    "/api/v1/orderbook/latest/": PAIR,
    "/api/v1/ticker/latest/": PAIR,
    "/api/v1/candles/": {**PAIR, "timeframe": "1m"},
}
# Values a hostile client sends for any parameter, path or query.
HOSTILE = [
    *OUT_OF_RANGE_TIMES,
    *NOT_TIMES,
    "",
    " ",
    "\x00",
    "okx:\x00",
    "a\x00b",
    "x" * 5000,
    "okx:" + "B" * 5000,
    "true\x00",
    "' OR 1=1 --",
    "%00",
    "../../etc/passwd",
    "💥",
    "[]",
    "{}",
    "-0",
    "99999999999999999999",
    "1" * 16,
]


def client_for(name: str, **flags) -> APIClient:
    user = get_user_model().objects.create_user(name, password="a-long-password", **flags)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api():
    return client_for("reader")


@pytest.fixture
def staff():
    return client_for("operator", is_staff=True)


@pytest.fixture
def unthrottled(settings):
    cache.clear()
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "100000/minute", "anon": "100000/minute"},
    }
    yield
    cache.clear()


def add_candle(at: datetime, timeframe: str = "1m") -> Candle:
    price = Decimal("105")
    return Candle.objects.create(
        **PAIR,
        timeframe=timeframe,
        timestamp=at,
        open=price,
        high=price,
        low=price,
        close=price,
        volume=Decimal("1.5"),
        quote_volume=Decimal("157.5"),
        vwap=price,
        trade_count=3,
        is_final=True,
    )


# Times out of range ---------------------------------------------------------------------


@pytest.mark.parametrize("path", TIME_ENDPOINTS)
@pytest.mark.parametrize("value", OUT_OF_RANGE_TIMES)
def test_an_as_of_out_of_range_is_a_400_naming_it(api, path, value):
    response = api.get(path, {**TIME_ENDPOINTS[path], "as_of": value})
    assert response.status_code == 400, response.content
    body = response.json()
    assert list(body) == ["as_of"]
    assert "1970" in body["as_of"][0] and "2999" in body["as_of"][0]


@pytest.mark.parametrize("path", ["/api/v1/trades/", "/api/v1/market-data/", "/api/v1/candles/"])
@pytest.mark.parametrize("name", ["start", "end"])
@pytest.mark.parametrize("value", [*OUT_OF_RANGE_TIMES, *NOT_TIMES])
def test_a_range_bound_out_of_range_or_not_a_time_is_a_400_naming_it(api, path, name, value):
    response = api.get(path, {**TIME_ENDPOINTS[path], name: value})
    assert response.status_code == 400, response.content
    assert name in response.json()


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("9999-12-30T00:00:00Z", "9999-12-31T23:59:59.999999Z"),
        ("2999-12-31T00:00:00Z", "253402300799999"),
        ("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z"),
    ],
)
@pytest.mark.parametrize("timeframe", ["1s", "1m", "1d"])
def test_fill_at_the_edges_of_time_is_a_400_naming_the_parameter(api, start, end, timeframe):
    query = {**PAIR, "timeframe": timeframe, "start": start, "end": end, "fill": "true"}
    response = api.get("/api/v1/candles/", query)
    assert response.status_code == 400, response.content
    assert set(response.json()) & {"start", "end"}


def test_the_first_and_last_times_in_range_are_answered(api):
    query = {**PAIR, "timeframe": "1d", "fill": "true"}
    late = {"start": "2999-12-30T00:00:00Z", "end": "2999-12-31T23:59:59.999Z"}
    assert api.get("/api/v1/candles/", {**query, **late}).json()["results"] == []
    early = {"start": "1970-01-01T00:00:00Z", "end": "86400000", "as_of": "0"}
    assert api.get("/api/v1/candles/", {**query, **early}).json()["results"] == []


# fill=true and the real clock -------------------------------------------------------------


@pytest.mark.parametrize("as_of_ahead", [timedelta(hours=1), timedelta(days=3650)])
def test_fill_with_a_future_as_of_marks_nothing_final_that_has_not_closed(api, as_of_ahead):
    before = datetime.now(UTC)
    first = before.replace(second=0, microsecond=0) - timedelta(minutes=10)
    add_candle(first)
    query = {
        **PAIR,
        "timeframe": "1m",
        "fill": "true",
        "start": (first - timedelta(minutes=1)).isoformat(),
        "end": (before + timedelta(days=3)).isoformat(),
        "as_of": (before + as_of_ahead).isoformat(),
    }
    response = api.get("/api/v1/candles/", query)
    after = datetime.now(UTC)
    assert response.status_code == 200, response.content
    stamps = [datetime.fromisoformat(row["timestamp"]) for row in response.json()["results"]]
    assert stamps[0] == first
    # every candle's interval has ended by the real clock; none is invented beyond now
    assert max(stamps) <= after
    assert len(stamps) <= 11


# Collector names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "okx:%00",
        "okx:BTC%00USDT",
        "%00:BTC-USDT",
        "okx:" + "B" * 300,
        "x" * 5000,
        "okx:",
        ":BTC-USDT",
        "okx:BTC-USDT:extra",
        "okx:%F0%9F%92%A5",
        "okx:%20BTC",
    ],
)
@pytest.mark.parametrize("action", ["start", "stop", "restart"])
def test_a_malformed_collector_name_is_a_404_for_staff_control(staff, action, name):
    response = staff.post(f"/api/v1/collectors/{name}/{action}/")
    assert response.status_code == 404, response.content
    assert response.json()["detail"].startswith("no collector")


@pytest.mark.parametrize("name", ["okx:%00", "okx:" + "B" * 5000, "%00"])
def test_a_malformed_collector_name_is_a_404_for_its_health(api, name):
    response = api.get(f"/api/v1/collectors/{name}/health/")
    assert response.status_code == 404, response.content


# Every route, every parameter, hostile values ------------------------------------------


def operations() -> list[tuple[str, str, dict]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def valid_value(parameter: dict) -> str:
    schema = parameter.get("schema", {})
    if parameter["in"] == "path":
        return "okx:BTC-USDT"
    if "enum" in schema:
        return str(schema["enum"][0])
    return {
        "symbol": "BTC-USDT",
        "start": "2024-01-01T00:00:00Z",
        "end": "2024-01-02T00:00:00Z",
        "limit": "10",
    }.get(parameter["name"], "x")


def url_for(path: str, path_values: dict[str, str]) -> str:
    for name, value in path_values.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


def test_the_schema_lists_every_route_this_test_walks():
    paths = {path for path, _, _ in operations()}
    assert {"/api/v1/trades/", "/api/v1/candles/", "/api/v1/health/"} <= paths
    assert "/api/v1/collectors/{name}/restart/" in paths
    assert len(paths) >= 10


def test_no_hostile_parameter_value_answers_500_on_any_route(api, staff, unthrottled):
    failures = []
    asked = 0
    for path, method, operation in operations():
        parameters = operation.get("parameters", [])
        client = staff if method == "post" else api
        required = {p["name"]: valid_value(p) for p in parameters if p.get("required")}
        path_names = {p["name"] for p in parameters if p["in"] == "path"}
        for parameter in parameters or [{"name": "unknown", "in": "query"}]:
            for value in HOSTILE:
                values = {**required, parameter["name"]: value}
                url = url_for(path, {k: v for k, v in values.items() if k in path_names})
                query = {k: v for k, v in values.items() if k not in path_names}
                if method == "post" and parameter["in"] != "path":
                    continue  # a control request with a valid name would send a real task
                send = client.post if method == "post" else client.get
                response = send(url, query) if method == "get" else send(url)
                asked += 1
                allowed = {503} if path == "/api/v1/health/" else set()
                if response.status_code >= 500 and response.status_code not in allowed:
                    failures.append((method, path, parameter["name"], value[:30], response))
    assert asked > 500
    assert failures == []
