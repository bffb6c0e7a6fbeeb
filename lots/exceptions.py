from ops.exceptions import DomainError, Forbidden, InvalidInput


class LotActionRefused(DomainError):
    """A lot cannot be changed this way in its current state (409)."""


class NotLotManager(Forbidden):
    """Only the seller or staff may manage a lot (403)."""


class InvalidAmount(InvalidInput):
    """A malformed amount of money (400, `invalid_amount`); the bidding app answers it as a rejected bid."""
