from auction_site.exceptions import DomainError, Forbidden


class LotActionRefused(DomainError):
    """A lot cannot be changed this way in its current state (409)."""


class NotLotManager(Forbidden):
    """Only the seller or staff may manage a lot (403)."""
