"""A user's watchlist."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from lots.models import Lot, Watch
from lots.selectors import is_lot_visible
from ops.exceptions import NotFound


def watch_lot(*, lot_id: int, user) -> None:
    """Add a lot to the user's watchlist (idempotent, whatever watches and unwatches run beside it).

    Raises `lot_not_found`, for a lot the user may not see too.
    """
    if not is_lot_visible(lot_id=lot_id, user=user):
        raise NotFound("lot_not_found", "No such lot.")
    # get_or_create's fallback read found nothing when an unwatch deleted the
    # row between its insert and its read (a 500): an insert that skips an
    # existing row has no such window.
    try:
        with transaction.atomic():
            if not Lot.objects.filter(pk=lot_id).exists():
                raise NotFound("lot_not_found", "No such lot.")
            Watch.objects.bulk_create([Watch(user=user, lot_id=lot_id)], ignore_conflicts=True)
    except IntegrityError as exc:  # The lot was deleted meanwhile.
        raise NotFound("lot_not_found", "No such lot.") from exc


def unwatch_lot(*, lot_id: int, user) -> None:
    """Take a lot off the user's watchlist (idempotent). Raises `lot_not_found`."""
    if not is_lot_visible(lot_id=lot_id, user=user):
        raise NotFound("lot_not_found", "No such lot.")
    Watch.objects.filter(user=user, lot_id=lot_id).delete()
