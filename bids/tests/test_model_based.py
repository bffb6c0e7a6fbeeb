"""Model-based test of one lot (issue #8): Hypothesis drives the real services, a reference model predicts them.

`ReferenceLot` is a small, independent statement of the bidding rules of the
README (price, leader, hidden maximum, proxy answers, reserve jump, soft close
up to the hard end, buy now, closing, cancelling, and which code refuses
what). It shares nothing with the services but the increment table
(`increment_for`). `OneLot` runs random sequences of bids, raises, buy-nows,
clock moves, closes and cancels against the services with an explicit `now`,
and after every step compares the stored lot (and each step's outcome) with
the model's. Every sequence starts from a fresh lot and is rolled back after.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bids.models import Bid
from bids.services import bid_request, buy_now, place_bid, place_bids
from lots.models import Lot
from lots.pricing import increment_for
from lots.services import cancel_lot, close_due_lots, close_lot, create_lot, settle_lot_if_due
from ops.exceptions import DomainError
from testsupport.reliability import size

pytestmark = [pytest.mark.reliability, pytest.mark.django_db]

CENT = Decimal("0.01")
SEQUENCES = size(50, 500)
STEPS = size(30, 50)


@dataclass
class ReferenceLot:
    """The rules of one lot, as the README states them."""

    seller: str
    starting_price: Decimal
    reserve_price: Decimal | None
    buy_now_price: Decimal | None
    fixed_increment: Decimal | None
    soft_close_seconds: int
    starts_at: datetime
    ends_at: datetime
    hard_ends_at: datetime
    status: str
    current_price: Decimal | None = None
    high_bidder: str | None = None
    high_max_amount: Decimal | None = None
    bid_count: int = 0
    # Stored bid rows: public bids, plus the leader's silent raises of their maximum.
    rows: int = 0
    winner: str | None = None
    final_price: Decimal | None = None

    def increment(self, price: Decimal) -> Decimal:
        return increment_for(price, self.fixed_increment)

    def min_next_bid(self) -> Decimal:
        if self.current_price is None:
            return self.starting_price
        return self.current_price + self.increment(self.current_price)

    @property
    def reserve_met(self) -> bool:
        return self.reserve_price is None or (
            self.current_price is not None and self.current_price >= self.reserve_price
        )

    # --- Bidding ---------------------------------------------------------

    def _refusal(self, who: str, now: datetime) -> str | None:
        """Why `who` may not bid now, checked in the README's order."""
        if self.status in ("closed", "cancelled"):
            return "lot_closed"
        if self.status != "open":
            return "lot_not_open"
        if now >= self.ends_at:
            return "lot_closed"
        if who == self.seller:
            return "own_lot"
        if who == "staff":
            return "staff_cannot_bid"
        return None

    def _jump_to_reserve(self, price: Decimal, ceiling: Decimal) -> Decimal:
        if self.reserve_price is not None and price < self.reserve_price <= ceiling:
            return self.reserve_price
        return price

    def _public_change(self, price: Decimal, now: datetime, *, bids: int) -> None:
        self.current_price = price
        self.bid_count += bids
        self.rows += bids
        window = timedelta(seconds=self.soft_close_seconds)
        if self.soft_close_seconds and self.ends_at - now < window:
            self.ends_at = max(self.ends_at, min(now + window, self.hard_ends_at))

    def bid(self, who: str, amount: Decimal, maximum: Decimal | None, now: datetime) -> tuple[str, object]:
        """("accepted", leading) or ("rejected", code)."""
        for value in (amount, maximum):
            if value is not None and (value <= 0 or value != value.quantize(CENT)):
                return "rejected", "invalid_amount"
        if maximum is not None and maximum < amount:
            return "rejected", "invalid_amount"
        refusal = self._refusal(who, now)
        if refusal:
            return "rejected", refusal
        ceiling = maximum or amount
        if who == self.high_bidder:
            if ceiling <= self.high_max_amount:
                return "rejected", "already_leading"
            self.high_max_amount = ceiling
            price = self._jump_to_reserve(self.current_price, ceiling)
            if price == self.current_price:
                self.rows += 1  # A silent raise: no public bid, no extension.
            else:
                self._public_change(price, now, bids=1)
            return "accepted", True
        if amount < self.min_next_bid():
            return "rejected", "bid_too_low"
        if self.high_bidder is None:
            self._public_change(self._jump_to_reserve(amount, ceiling), now, bids=1)
            self.high_bidder, self.high_max_amount = who, ceiling
            return "accepted", True
        leader_max = self.high_max_amount
        if ceiling > leader_max:
            # The old leader's proxy bids its maximum out (if above the price), then the
            # challenger leads one increment above it, within their own maximum.
            proxy_bids = 1 if leader_max > self.current_price else 0
            price = max(amount, min(ceiling, leader_max + self.increment(leader_max)))
            self._public_change(self._jump_to_reserve(price, ceiling), now, bids=proxy_bids + 1)
            self.high_bidder, self.high_max_amount = who, ceiling
            return "accepted", True
        # Outbid at once: the challenger's bid stands, then the leader's proxy answers
        # one increment above it, within the leader's maximum (equal maxima: the earlier wins).
        answer = min(leader_max, ceiling + self.increment(ceiling))
        if answer > amount:
            self._public_change(answer, now, bids=2)
        else:
            self._public_change(amount, now, bids=1)
        return "accepted", False

    def buy_now(self, who: str, now: datetime) -> tuple[str, object]:
        refusal = self._refusal(who, now)
        if refusal:
            return "rejected", refusal
        if self.buy_now_price is None or (self.current_price is not None and self.current_price >= self.buy_now_price):
            return "rejected", "buy_now_unavailable"
        self.current_price = self.buy_now_price
        self.high_bidder = who
        self.high_max_amount = self.buy_now_price
        self.bid_count += 1
        self.rows += 1
        self._finish()
        return "accepted", True

    # --- Closing -------------------------------------------------------------

    def _finish(self) -> None:
        self.status = "closed"
        if self.bid_count and self.reserve_met:
            self.winner, self.final_price = self.high_bidder, self.current_price

    def close(self, actor: str) -> tuple[str, object]:
        if actor not in (self.seller, "staff"):
            return "rejected", "not_lot_manager"
        if self.status in ("closed", "cancelled"):
            return "rejected", "lot_closed"
        if self.status != "open":
            return "rejected", "lot_not_open"
        self._finish()
        return "accepted", None

    def cancel(self, actor: str) -> tuple[str, object]:
        if actor not in (self.seller, "staff"):
            return "rejected", "not_lot_manager"
        if self.status in ("closed", "cancelled"):
            return "rejected", "lot_closed"
        self.status = "cancelled"
        return "accepted", None

    def settle_if_due(self, now: datetime) -> bool:
        """What a reader (or a clock) does at `now`: open or close the lot when its time has come."""
        if self.status == "open" and self.ends_at <= now:
            self._finish()
            return True
        if self.status == "scheduled" and self.starts_at <= now:
            if self.ends_at > now:
                self.status = "open"
            else:
                self._finish()
            return True
        return False

    def close_if_ended(self, now: datetime) -> bool:
        """What the clock's `close_due_lots` does: only open lots whose end has passed."""
        if self.status == "open" and self.ends_at <= now:
            self._finish()
            return True
        return False


def money(value) -> Decimal:
    return Decimal(value).quantize(CENT)


lot_configs = st.fixed_dictionaries(
    {
        "starting_price": st.sampled_from(["0.50", "1.00", "4.75", "10.00", "99.00", "240.00", "1000.00"]).map(money),
        "reserve_above_start": st.none() | st.sampled_from(["0", "1.00", "25.00", "300.00"]).map(money),
        "buy_now_above": st.none() | st.sampled_from(["0.01", "5.00", "150.00"]).map(money),
        "fixed_increment": st.none() | st.sampled_from(["0.01", "0.50", "5.00"]).map(money),
        "soft_close_seconds": st.sampled_from([0, 30, 120]),
        "duration": st.sampled_from([60, 600]),
        "hard_extension": st.sampled_from([0, 90, 600]),
        "opens_in": st.sampled_from([0, 0, 30]),
    }
)


# Ending a lot ends its sequence's interest: the rules that do it act in one step out of five.
rarely = st.integers(0, 4).map(lambda draw: draw == 0)


class OneLot(RuleBasedStateMachine):
    """Random sequences of actions on one fresh lot; the stored lot must equal the model after each."""

    users: dict[str, object] = {}
    sequences = 0
    steps = 0
    outcomes: Counter = Counter()

    def __init__(self) -> None:
        super().__init__()
        type(self).sequences += 1
        # Each sequence runs in a savepoint rolled back at its end: the next one starts clean.
        self.sequence_transaction = transaction.atomic()
        self.sequence_transaction.__enter__()
        self.model: ReferenceLot | None = None

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.sequence_transaction.__exit__(None, None, None)

    @initialize(config=lot_configs)
    def create(self, config) -> None:
        self.now = timezone.now().replace(microsecond=0)
        start = config["starting_price"]
        reserve = None if config["reserve_above_start"] is None else start + config["reserve_above_start"]
        buy_now_price = None if config["buy_now_above"] is None else (reserve or start) + config["buy_now_above"]
        starts_at = self.now + timedelta(seconds=config["opens_in"])
        ends_at = starts_at + timedelta(seconds=config["duration"])
        hard_ends_at = ends_at + timedelta(seconds=config["hard_extension"])
        lot = create_lot(
            seller=self.users["seller"],
            title="Model lot",
            starting_price=str(start),
            reserve_price=None if reserve is None else str(reserve),
            buy_now_price=None if buy_now_price is None else str(buy_now_price),
            bid_increment=None if config["fixed_increment"] is None else str(config["fixed_increment"]),
            starts_at=starts_at if config["opens_in"] else None,
            ends_at=ends_at,
            hard_ends_at=hard_ends_at,
            soft_close_seconds=config["soft_close_seconds"],
            now=self.now,
        )
        self.lot_id = lot.pk
        self.model = ReferenceLot(
            seller="seller",
            starting_price=start,
            reserve_price=reserve,
            buy_now_price=buy_now_price,
            fixed_increment=config["fixed_increment"],
            soft_close_seconds=config["soft_close_seconds"],
            starts_at=starts_at,
            ends_at=ends_at,
            hard_ends_at=hard_ends_at,
            status="scheduled" if config["opens_in"] else "open",
        )

    # --- Running one action on both sides --------------------------------------

    def _run(self, action: str, call, expected: tuple[str, object]) -> object:
        """Run the service; its outcome (accepted and how, or the refusal's code) must be the model's."""
        type(self).steps += 1
        note(f"{action} at +{(self.now - self.model.starts_at).total_seconds():.0f}s -> model says {expected}")
        try:
            result = call()
        except DomainError as refused:
            actual = ("rejected", refused.code)
        else:
            actual = ("accepted", getattr(result, "leading", None))
        assert actual == expected, f"{action}: the services said {actual}, the model {expected}"
        type(self).outcomes[actual[1] if actual[0] == "rejected" else f"{action.split()[1]}: accepted"] += 1
        return result if actual[0] == "accepted" else None

    def _bid(self, who: str, amount: Decimal, maximum: Decimal | None) -> None:
        expected = self.model.bid(who, amount, maximum, self.now)
        self._run(
            f"{who} bids {amount} (max {maximum})",
            lambda: place_bid(
                lot_id=self.lot_id,
                bidder=self.users[who],
                amount=str(amount),
                max_amount=None if maximum is None else str(maximum),
                now=self.now,
            ),
            expected,
        )

    def _amount(self, data) -> Decimal:
        """Near the minimum next bid mostly; sometimes a tie with the leader's maximum, below it, or anywhere."""
        floor = self.model.min_next_bid()
        leader_max = self.model.high_max_amount or floor
        step = self.model.increment(floor)
        choice = data.draw(
            st.sampled_from(["min", "above", "min", "above", "below", "tie", "under_max", "anywhere", "malformed"]),
            label="amount",
        )
        if choice == "min":
            return floor
        if choice == "above":
            return floor + step * data.draw(st.integers(1, 4))
        if choice == "below":
            return floor - CENT
        if choice == "tie":
            return leader_max
        if choice == "under_max":
            return leader_max - CENT
        if choice == "anywhere":
            return data.draw(st.decimals(min_value="0.01", max_value="3000", places=2))
        return data.draw(st.sampled_from([Decimal("0"), Decimal("-1.00"), floor + Decimal("0.001")]))

    # --- Rules ------------------------------------------------------------------

    @rule(who=st.sampled_from(["alice", "bob", "carol"]), data=st.data())
    def bid(self, who, data) -> None:
        self._bid(who, self._amount(data), None)

    @rule(who=st.sampled_from(["alice", "bob", "carol"]), data=st.data())
    def bid_with_maximum(self, who, data) -> None:
        amount = self._amount(data)
        leader_max = self.model.high_max_amount
        maximum = data.draw(
            st.sampled_from(
                [amount + CENT, amount + self.model.increment(amount), amount * 2, amount, amount - CENT]
                + ([leader_max, leader_max + CENT] if leader_max is not None else [])
            ),
            label="maximum",
        )
        self._bid(who, amount, maximum)

    @rule(data=st.data())
    def bids_together(self, data) -> None:
        """Two to four bids that waited together (a batch of `place_bids`: one lock, one commit); each must
        have the outcome the model gives it alone, in their order."""
        drawn = []
        for _ in range(data.draw(st.integers(2, 4), label="bids together")):
            who = data.draw(st.sampled_from(["alice", "bob", "carol"]), label="who")
            amount = self._amount(data)
            drawn.append((who, amount, data.draw(st.sampled_from([None, amount * 2]), label="maximum")))
        expected = [self.model.bid(who, amount, maximum, self.now) for who, amount, maximum in drawn]
        actual: dict[int, tuple[str, object]] = {}
        requests = []
        for index, (who, amount, maximum) in enumerate(drawn):
            try:
                request = bid_request(
                    lot_id=self.lot_id,
                    bidder=self.users[who],
                    amount=str(amount),
                    max_amount=None if maximum is None else str(maximum),
                )
            except DomainError as refused:  # Malformed: refused before it waits.
                actual[index] = ("rejected", refused.code)
                continue
            requests.append((index, request))
        results = place_bids(lot_id=self.lot_id, requests=[request for _, request in requests], now=self.now)
        for (index, _), result in zip(requests, results, strict=True):
            actual[index] = (
                ("rejected", result.code) if isinstance(result, DomainError) else ("accepted", result.leading)
            )
        for index, (who, amount, maximum) in enumerate(drawn):
            type(self).steps += 1
            note(f"{who} bids {amount} (max {maximum}) together -> model says {expected[index]}")
            assert actual[index] == expected[index], f"bid {index} of the batch: services {actual[index]}"
            outcome = actual[index]
            type(self).outcomes[outcome[1] if outcome[0] == "rejected" else "bid together: accepted"] += 1

    @precondition(lambda self: self.model.high_bidder is not None)
    @rule(data=st.data())
    def leader_raises_maximum(self, data) -> None:
        model = self.model
        targets = [model.high_max_amount, model.high_max_amount + CENT, model.high_max_amount * 3]
        if model.reserve_price is not None:
            targets.append(model.reserve_price)
        ceiling = data.draw(st.sampled_from(targets), label="new maximum")
        self._bid(model.high_bidder, min(model.min_next_bid(), ceiling), ceiling)

    @precondition(lambda self: self.model.buy_now_price is not None)
    @rule(who=st.sampled_from(["alice", "bob", "carol", "seller", "staff"]))
    def buy_now(self, who) -> None:
        expected = self.model.buy_now(who, self.now)
        self._run(f"{who} buys now", lambda: buy_now(lot_id=self.lot_id, buyer=self.users[who], now=self.now), expected)

    @rule(data=st.data())
    def advance_time(self, data) -> None:
        """Mostly a few seconds; now and then right up to, onto or past the (possibly extended) end or the hard end."""
        model = self.model
        targets = [
            model.starts_at,
            model.ends_at - timedelta(seconds=1),
            model.ends_at,
            model.ends_at + timedelta(seconds=1),
            model.hard_ends_at + timedelta(seconds=5),
        ]
        choice = data.draw(st.integers(0, 4 * len(targets)), label="time")
        if choice < len(targets):
            self.now = max(self.now, targets[choice])
        else:
            self.now += timedelta(seconds=data.draw(st.integers(1, 25), label="seconds"))

    @rule(how=st.sampled_from(["reader", "clock"]))
    def settle(self, how) -> None:
        """A reader settles the lot if due (`settle_lot_if_due`), or the clock closes every ended lot."""
        type(self).steps += 1
        if how == "reader":
            expected = self.model.settle_if_due(self.now)
            changed = settle_lot_if_due(lot=Lot.objects.get(pk=self.lot_id), now=self.now)
        else:
            expected = self.model.close_if_ended(self.now)
            changed = [lot.pk for lot in close_due_lots(now=self.now)] == [self.lot_id]
        assert changed == expected, f"{how} settling at {self.now}: services {changed}, model {expected}"

    @rule(actor=st.sampled_from(["seller", "staff", "alice"]), act=rarely)
    def close(self, actor, act) -> None:
        if not act:
            return
        self._run(
            f"{actor} closes",
            lambda: close_lot(lot_id=self.lot_id, actor=self.users[actor], now=self.now),
            self.model.close(actor),
        )

    @rule(actor=st.sampled_from(["seller", "staff", "bob"]), act=rarely)
    def cancel(self, actor, act) -> None:
        if not act:
            return
        self._run(
            f"{actor} cancels",
            lambda: cancel_lot(lot_id=self.lot_id, actor=self.users[actor], now=self.now),
            self.model.cancel(actor),
        )

    # --- After every step ----------------------------------------------------------

    @invariant()
    def stored_lot_is_the_models(self) -> None:
        if self.model is None:
            return
        lot = Lot.objects.select_related("high_bidder", "winner").get(pk=self.lot_id)
        model = self.model
        username = {user.pk: name for name, user in self.users.items()}
        stored = {
            "status": lot.status,
            "current_price": lot.current_price,
            "high_bidder": username.get(lot.high_bidder_id),
            "high_max_amount": lot.high_max_amount,
            "bid_count": lot.bid_count,
            "ends_at": lot.ends_at,
            "winner": username.get(lot.winner_id),
            "final_price": lot.final_price,
            "bid rows": Bid.objects.filter(lot_id=self.lot_id).count(),
        }
        expected = {
            "status": model.status,
            "current_price": model.current_price,
            "high_bidder": model.high_bidder,
            "high_max_amount": model.high_max_amount,
            "bid_count": model.bid_count,
            "ends_at": model.ends_at,
            "winner": model.winner,
            "final_price": model.final_price,
            "bid rows": model.rows,
        }
        assert stored == expected, f"stored lot differs from the model: {stored} != {expected}"


HYPOTHESIS = hypothesis_settings(
    max_examples=SEQUENCES,
    stateful_step_count=STEPS,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_one_lot_follows_the_reference_model(make_user, settings):
    # Thousands of bids by three users in seconds: the per-user bid rate limit has its own tests.
    settings.BIDS_PER_MINUTE = 1_000_000
    OneLot.users = {
        "seller": make_user("model_seller"),
        "staff": make_user("model_staff", is_staff=True),
        "alice": make_user("model_alice"),
        "bob": make_user("model_bob"),
        "carol": make_user("model_carol"),
    }
    OneLot.sequences = OneLot.steps = 0
    OneLot.outcomes = Counter()

    run_state_machine_as_test(OneLot, settings=HYPOTHESIS)

    print(f"\nmodel-based: {OneLot.sequences} sequences, {OneLot.steps} steps (up to {STEPS} each)")
    print(f"outcomes: {dict(OneLot.outcomes.most_common())}")
    assert OneLot.sequences >= SEQUENCES
