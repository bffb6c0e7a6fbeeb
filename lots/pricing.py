"""The pure arithmetic of bidding: increments, minimum bids, money checks."""

import functools
import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from lots.exceptions import InvalidAmount

CENT = Decimal("0.01")

# ISO 4217 codes accepted for lots, with their minor units; `AUCTION_CURRENCIES` in settings replaces them.
CURRENCIES = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "HKD": 2,
    "SGD": 2,
    "NZD": 2,
    "CNY": 2,
    "INR": 2,
    "BRL": 2,
    "MXN": 2,
    "JPY": 0,
    "KRW": 0,
}
# The minimum raise over the current price: (price under, increment); `AUCTION_BID_INCREMENTS` replaces it.
BID_INCREMENTS = [
    (Decimal("1"), Decimal("0.05")),
    (Decimal("5"), Decimal("0.25")),
    (Decimal("25"), Decimal("0.50")),
    (Decimal("100"), Decimal("1.00")),
    (Decimal("250"), Decimal("2.50")),
    (Decimal("500"), Decimal("5.00")),
    (Decimal("1000"), Decimal("10.00")),
    (Decimal("2500"), Decimal("25.00")),
    (Decimal("5000"), Decimal("50.00")),
    (None, Decimal("100.00")),
]
# The largest amount the money columns hold (12 digits, 2 of them decimals).
MAX_AMOUNT = Decimal("9999999999.99")


# Read once, not on every bid (a setting that is absent costs an exception per read); forgotten when a
# test overrides either setting.
@functools.cache
def currencies() -> dict[str, int]:
    return getattr(settings, "AUCTION_CURRENCIES", CURRENCIES)


def default_currency() -> str:
    """The currency of a lot that names none (`AUCTION_DEFAULT_CURRENCY`)."""
    return settings.AUCTION_DEFAULT_CURRENCY


@functools.cache
def bid_increments() -> list[tuple[Decimal | None, Decimal]]:
    return getattr(settings, "AUCTION_BID_INCREMENTS", BID_INCREMENTS)


@receiver(setting_changed)
def _forget_tables(*, setting: str, **kwargs) -> None:
    if setting in ("AUCTION_CURRENCIES", "AUCTION_BID_INCREMENTS"):
        currencies.cache_clear()
        bid_increments.cache_clear()


# Longer strings cannot be a sensible amount; refuse them before parsing.
MAX_AMOUNT_CHARS = 40


def increment_for(price: Decimal, fixed: Decimal | None = None, *, places: int = 2) -> Decimal:
    """The minimum raise over `price`: the lot's fixed increment, else the table's.

    The table's steps are rounded up to the currency's smallest unit (`places`
    decimals), so a yen lot never asks for a fraction of a yen.
    """
    if fixed is not None:
        return fixed
    for under, increment in bid_increments():
        if under is None or price < under:
            return increment.quantize(Decimal(1).scaleb(-places), rounding=ROUND_CEILING)
    raise AssertionError("the increment table must end with an open-ended row")


def min_next_bid(
    *, starting_price: Decimal, current_price: Decimal | None, fixed_increment: Decimal | None, places: int = 2
) -> Decimal:
    if current_price is None:
        return starting_price
    return current_price + increment_for(current_price, fixed_increment, places=places)


def currency_places(currency: str) -> int:
    return currencies().get(currency, 2)


def money_text(amount: Decimal | str, currency: str) -> str:
    """An amount as a person reads it, with its currency and the currency's places: "USD 1,000.50", "JPY 1,200".

    The code rather than a symbol: "$" alone is several currencies, and no locale is known here.
    """
    return f"{currency} {Decimal(amount):,.{currency_places(currency)}f}"


@functools.cache
def _plain_amount(places: int) -> re.Pattern:
    """ASCII digits, then at most one `.` with 1 to `places` digits; a leading `-` parses, to be refused
    as not positive."""
    decimals = rf"(?:\.[0-9]{{1,{places}}})?" if places else ""
    return re.compile(rf"-?[0-9]+{decimals}", re.ASCII)


def parse_money(value: object, *, field: str = "amount", places: int = 2) -> Decimal:
    """A positive, finite amount with at most `places` decimals, or `invalid_amount`.

    Text must be plain (`_plain_amount`): "150", "150.5", "150.50".
    """
    if isinstance(value, bool):
        amount = None
    elif isinstance(value, float):
        # A JSON number's shortest repr is exactly what the client wrote, so
        # 150.55 stays 150.55; one that float could not hold fails below.
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        # Text takes one plain format (`_plain_amount`): Decimal() alone would also
        # take other digit systems (Arabic-Indic, fullwidth), "1_000", "+15", " 20 " and "1e3".
        amount = Decimal(value) if len(value) <= MAX_AMOUNT_CHARS and _plain_amount(places).fullmatch(value) else None
    elif isinstance(value, (int, Decimal)) and len(str(value)) <= MAX_AMOUNT_CHARS:
        # A JSON number (WebSocket frames parse floats as Decimal).
        try:
            amount = Decimal(value)
        except InvalidOperation:
            amount = None
    else:
        amount = None
    if amount is None or not amount.is_finite():
        raise InvalidAmount("invalid_amount", f"{field} is not a number.", field=field)
    if amount <= 0:
        raise InvalidAmount("invalid_amount", f"{field} must be positive.", field=field)
    if amount > MAX_AMOUNT:
        raise InvalidAmount("invalid_amount", f"{field} is too large.", field=field)
    if amount.as_tuple().exponent < -places and amount != amount.quantize(Decimal(1).scaleb(-places)):
        raise InvalidAmount("invalid_amount", f"{field} has more than {places} decimal places.", field=field)
    return amount.quantize(CENT)
