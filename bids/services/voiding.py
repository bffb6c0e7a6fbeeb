"""Staff voiding a bidder's bids: the lot's other bids are replayed as if the bidder had never bid."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from bids.exceptions import BidRejected
from bids.models import Bid, VoidReason
from bids.services.planning import plan_bid, take_step
from lots.events import EventType, Outbox, lot_price_state
from lots.exceptions import LotActionRefused, NotLotManager
from lots.models import Lot, LotStatus, Registration
from lots.selectors import get_aliases
from lots.services import lock_lot
from ops.exceptions import NotFound


def _replan(*, lot: Lot, submissions: list[Bid]) -> list[Bid]:
    """Replay own bids, in order, against the lot's state; returns the rows they make now.

    A submission the rules now refuse makes no row: a leader's raise that no
    longer raises. Prices only fall when bids are taken out, so a replayed bid
    is never below the minimum it once met.
    """
    rows: list[Bid] = []
    for submission in submissions:
        ceiling = submission.max_amount if submission.max_amount is not None else submission.submitted_amount
        try:
            planned = plan_bid(
                lot=lot,
                bidder=submission.bidder,
                amount=submission.submitted_amount,
                ceiling=ceiling,
                key=submission.idempotency_key,
                request_hash=submission.request_hash,
            )
        except BidRejected:
            continue
        if planned[-1].leader_id == submission.bidder_id:
            lot.high_max_amount = ceiling
        for step in planned:
            step.bid.created_at = submission.created_at
            if not step.bid.raises_max_only:
                take_step(lot, step)
        rows.extend(step.bid for step in planned)
    return rows


@transaction.atomic
def void_bids(*, lot_id: int, bidder_id: int, actor, now: datetime | None = None) -> int:
    """Staff void every bid of one bidder on an open lot. Locks the lot row.

    The lot's other bids are replayed without them, so prices the voided
    bidder pushed up fall back: rows from the bidder's first bid on are marked
    void and replaced by the replay's. Returns how many of the bidder's rows
    were voided (0 when none stand). Raises `not_staff`, `lot_not_found`,
    `lot_not_open`.
    """
    if not actor.is_staff:
        raise NotLotManager("not_staff", "Only staff void bids.")
    lot = lock_lot(lot_id)
    if lot.status != LotStatus.OPEN:
        raise LotActionRefused("lot_not_open", "Bids can be voided only while the lot is open.")
    standing = list(Bid.objects.filter(lot=lot, void_reason="").select_related("bidder").order_by("id"))
    first = next((index for index, row in enumerate(standing) if row.bidder_id == bidder_id), None)
    if first is None:
        return 0
    if first and standing[first - 1].is_proxy and standing[first - 1].created_at == standing[first].created_at:
        # The previous leader's proxy bid, made by the same submission (`planning._plan_challenge`).
        first -= 1
    first_voided = standing[first].pk
    now = now or timezone.now()
    redone = standing[first:]
    voided = [row for row in redone if row.bidder_id == bidder_id]
    # The replay of the bids before the first voided one rebuilds the state
    # they left; only the later ones make new rows.
    submissions = [row for row in standing if not row.is_proxy and row.bidder_id != bidder_id]
    lot.current_price = lot.high_bidder_id = lot.high_max_amount = None
    lot.bid_count = 0
    _replan(lot=lot, submissions=[row for row in submissions if row.pk < first_voided])
    replacements = _replan(lot=lot, submissions=[row for row in submissions if row.pk >= first_voided])

    Bid.objects.filter(pk__in=[row.pk for row in redone]).update(
        void_reason=Case(
            When(bidder_id=bidder_id, then=Value(VoidReason.VOIDED)), default=Value(VoidReason.SUPERSEDED)
        ),
        voided_at=now,
        voided_by=actor,
        # A superseded bid's idempotency key moves to its replacement.
        idempotency_key=Case(When(bidder_id=bidder_id, then=F("idempotency_key")), default=None),
    )
    Bid.objects.bulk_create(replacements)
    outbox = Outbox(lot)
    aliases = get_aliases(lot_id=lot.pk, user_ids=[bidder_id, lot.high_bidder_id])
    outbox.lot_event(
        EventType.BIDS_VOIDED,
        bidder=aliases.get(bidder_id),
        voided=len(voided),
        lot=lot_price_state(lot, high_bidder_alias=aliases.get(lot.high_bidder_id)),
    )
    outbox.save_lot("current_price", "high_bidder", "high_max_amount", "bid_count")
    outbox.notify(bidder_id, EventType.BIDS_VOIDED, lot_id=lot.id, title=lot.title, voided=len(voided))
    outbox.flush()
    return len(voided)


@transaction.atomic
def void_participant_bids(*, registration_id: int, actor, now: datetime | None = None) -> dict[int, int]:
    """Staff void a sale participant's bids on every open lot of the sale, lots locked in id order.

    Returns {lot id: bids voided} for the lots that had some. Raises `not_staff`,
    `registration_not_found`.
    """
    if not actor.is_staff:
        raise NotLotManager("not_staff", "Only staff void bids.")
    registration = Registration.objects.filter(pk=registration_id).first()
    if registration is None:
        raise NotFound("registration_not_found", "No such registration.")
    lot_ids = (
        Bid.objects.filter(
            lot__auction_id=registration.auction_id,
            lot__status=LotStatus.OPEN,
            bidder_id=registration.user_id,
            void_reason="",
        )
        .order_by("lot_id")
        .values_list("lot_id", flat=True)
        .distinct()
    )
    voided = {}
    for lot_id in lot_ids:
        try:
            count = void_bids(lot_id=lot_id, bidder_id=registration.user_id, actor=actor, now=now)
        except LotActionRefused:
            continue  # Closed since the list was read: its result stands.
        if count:
            voided[lot_id] = count
    return voided
