"""The pure arithmetic of bidding: increments, minimum bids, money checks."""

import functools
import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from django.conf import settings

from bids.exceptions import InvalidBid

CENT = Decimal("0.01")
# Longer strings cannot be a sensible amount; refuse them before parsing.
MAX_AMOUNT_CHARS = 40


def increment_for(price: Decimal, fixed: Decimal | None = None, *, places: int = 2) -> Decimal:
    """The minimum raise over `price`: the lot's fixed increment, else the table's.

    The table's steps are rounded up to the currency's smallest unit (`places`
    decimals), so a yen lot never asks for a fraction of a yen.
    """
    if fixed is not None:
        return fixed
    for under, increment in settings.AUCTION_BID_INCREMENTS:
        if under is None or price < under:
            return increment.quantize(Decimal(1).scaleb(-places), rounding=ROUND_CEILING)
    raise AssertionError("AUCTION_BID_INCREMENTS must end with an open-ended row")


def min_next_bid(
    *, starting_price: Decimal, current_price: Decimal | None, fixed_increment: Decimal | None, places: int = 2
) -> Decimal:
    if current_price is None:
        return starting_price
    return current_price + increment_for(current_price, fixed_increment, places=places)


def currency_places(currency: str) -> int:
    return settings.AUCTION_CURRENCIES.get(currency, 2)


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
        raise InvalidBid("invalid_amount", f"{field} is not a number.", field=field)
    if amount <= 0:
        raise InvalidBid("invalid_amount", f"{field} must be positive.", field=field)
    if amount > settings.AUCTION_MAX_AMOUNT:
        raise InvalidBid("invalid_amount", f"{field} is too large.", field=field)
    if amount.as_tuple().exponent < -places and amount != amount.quantize(Decimal(1).scaleb(-places)):
        raise InvalidBid("invalid_amount", f"{field} has more than {places} decimal places.", field=field)
    return amount.quantize(CENT)
