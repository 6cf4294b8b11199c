"""A link's planned replacement: an exchange that cuts connections after a while (Binance
after 24 hours) gets a successor connection first, and nothing is lost or doubled."""

import pytest

from collectors.collector import BaseDataCollector
from collectors.exchanges.okx import OkxAdapter
from marketdata.models import RawTrade
from tests.helpers import make_config, run, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


class ShortLivedOkx(OkxAdapter):
    connection_lifetime = 1.0  # 24 hours, compressed


def test_connections_are_replaced_before_their_lifetime_ends_without_loss_or_doubles(
    simulator, sink
):
    config = make_config(simulator, "BTC-USDT")
    collector = BaseDataCollector(config, ShortLivedOkx(config), sink=sink)
    assert run(collector.start())
    wait_until(lambda: simulator.stats()["connections"] >= 4, 15, message="three replacements")
    simulator.fault("pause", inst_id="BTC-USDT")
    sent = {trade["tradeId"] for trade in simulator.sent_trades("BTC-USDT")}
    wait_until(lambda: collector.counters()["points"] >= len(sent), 10, message="every trade")
    run(collector.stop())

    stored = list(RawTrade.objects.filter(symbol="BTC-USDT").values_list("trade_id", flat=True))
    assert set(stored) == sent and len(stored) == len(sent)
    assert collector.counters()["points"] == len(sent)  # delivered once each, too
    assert collector.counters()["errors"] == 0, collector.last_error
    assert collector.total_reconnects == 0  # replaced, never dropped
