from auction_site.exceptions import DomainError, InvalidInput, RateLimited


class BidRejected(DomainError):
    """A bid (or buy-now) the rules refuse; 409, and BID_REJECTED on a socket."""


class InvalidBid(BidRejected, InvalidInput):
    """A malformed bid (bad amount); 400 over REST."""


class BidsRateLimited(BidRejected, RateLimited):
    """Too many bids from one user (`BIDS_PER_MINUTE`); 429 with Retry-After, BID_REJECTED on a socket."""
