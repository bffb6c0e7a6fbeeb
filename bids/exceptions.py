from ops.exceptions import DomainError, Forbidden, InvalidInput, RateLimited


class BidRejected(DomainError):
    """A bid (or buy-now) the rules refuse; 409, and BID_REJECTED on a socket."""


class InvalidBid(BidRejected, InvalidInput):
    """A malformed bid (bad amount); 400 over REST."""


class BidsRateLimited(BidRejected, RateLimited):
    """Too many bids from one user (`BIDS_PER_MINUTE`); 429 with Retry-After, BID_REJECTED on a socket."""


class BidderRefused(BidRejected, Forbidden):
    """The bidder's account was deactivated or their session ended; 403 over REST, BID_REJECTED on a socket."""
