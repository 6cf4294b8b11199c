"""`load_exchange_config --keep-existing` (what `make run` uses) never undoes the operator."""

import io

import pytest
from django.core.management import CommandError, call_command

from collectors.models import Exchange, TradingPair
from tests.helpers import ROOT

pytestmark = pytest.mark.django_db
SIMULATOR_FILE = str(ROOT / "config" / "okx-simulator.json")


def load(*args: str) -> str:
    out = io.StringIO()
    call_command("load_exchange_config", *args, stdout=out)
    return out.getvalue()


def test_into_an_empty_database_it_loads_the_exchange_and_says_so():
    text = load("--keep-existing", SIMULATOR_FILE)
    pairs = TradingPair.objects.filter(exchange__name="okx").count()
    assert pairs > 0
    assert text.strip() == (
        f"{SIMULATOR_FILE}: exchange okx was not in the database; loaded it with {pairs} "
        "trading pairs"
    )


def test_a_pair_the_operator_disabled_or_deleted_stays_so():
    load("--keep-existing", SIMULATOR_FILE)
    disabled, deleted = TradingPair.objects.filter(exchange__name="okx").order_by("pk")[:2]
    disabled.enabled = False
    disabled.save()
    deleted.delete()
    Exchange.objects.filter(name="okx").update(health_check_interval=7)
    text = load("--keep-existing", SIMULATOR_FILE)
    assert "okx is already in the database; left as it is" in text
    assert text.count("\n") == 1
    disabled.refresh_from_db()
    assert not disabled.enabled
    assert not TradingPair.objects.filter(pk=deleted.pk).exists()
    assert Exchange.objects.get(name="okx").health_check_interval == 7


def test_without_the_option_the_file_still_overwrites():
    load(SIMULATOR_FILE)
    pair = TradingPair.objects.filter(exchange__name="okx").first()
    TradingPair.objects.filter(pk=pair.pk).update(enabled=False)
    load(SIMULATOR_FILE)
    pair.refresh_from_db()
    assert pair.enabled


def test_replace_and_keep_existing_together_are_refused():
    with pytest.raises(CommandError, match="contradict"):
        load("--replace", "--keep-existing", SIMULATOR_FILE)
