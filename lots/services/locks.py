"""The lot's row lock, which every writer of a lot takes (the bid service too), and who may manage a lot."""

from __future__ import annotations

from lots.exceptions import NotLotManager
from lots.models import Lot, LotStatus
from lots.selectors import visible_to
from ops.exceptions import NotFound

ENDED = (LotStatus.CLOSED, LotStatus.CANCELLED)


def locked_lots():
    """Lots with their rows locked; related rows are read after the lock, not joined.

    A locker that waited gets the lot row as committed by the holder, but
    PostgreSQL keeps the joined rows it first saw: a joined `high_bidder`
    would be the old leader, or none.
    """
    return Lot.objects.select_for_update(of=("self",))


def lock_lot(lot_id: int, *, viewer=None) -> Lot:
    """The lot, its row locked until the transaction ends. Raises `lot_not_found`.

    With a `viewer` (a user or anonymous), a lot they may not see is
    `lot_not_found` too (`selectors.visible_to`); None is the system (the clock).
    """
    lots = locked_lots() if viewer is None else locked_lots().filter(visible_to(viewer))
    try:
        return lots.get(pk=lot_id)
    except (Lot.DoesNotExist, ValueError, TypeError):
        raise NotFound("lot_not_found", "No such lot.") from None


def ensure_can_manage(*, lot: Lot, actor) -> None:
    """Only the seller or staff manage a lot; `actor=None` is the system clock."""
    if actor is not None and not (actor.is_staff or actor.pk == lot.seller_id):
        raise NotLotManager("not_lot_manager", "Only the seller or staff can manage this lot.")
