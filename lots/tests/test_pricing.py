"""The currency and increment tables are `lots.pricing`'s; settings may replace either."""

from decimal import Decimal as D

from lots.pricing import currency_places, increment_for


def test_the_tables_apply_when_settings_name_none():
    assert currency_places("JPY") == 0
    assert increment_for(D("120.00")) == D("2.50")


def test_settings_replace_the_currency_table(settings):
    settings.AUCTION_CURRENCIES = {"USD": 2, "KWD": 3}

    assert currency_places("KWD") == 3
    assert currency_places("JPY") == 2  # Not in the replacement: the default places.


def test_settings_replace_the_increment_table(settings):
    settings.AUCTION_BID_INCREMENTS = [(None, D("7.00"))]

    assert increment_for(D("120.00")) == D("7.00")


def test_the_tables_come_back_when_the_settings_go():
    # After the two tests above: their replacements are not kept.
    assert (currency_places("KWD"), increment_for(D("120.00"))) == (2, D("2.50"))
