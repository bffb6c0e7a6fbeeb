"""A bid's rows in as few statements as the database takes them.

On PostgreSQL an accepted bid is five statements: BEGIN, the locked read of
its lot (`services._lock_for_bid`), one that reserves the new bids' ids (and
reads the aliases the locked read could not vouch for), one that writes every
row (bids, alias, events, notifications and the lot, in one `WITH`), COMMIT.
The ids come first because the events carry them, serialized once.
Elsewhere (SQLite, the embedded default) the ORM writes one table at a time.
"""

from __future__ import annotations

from itertools import chain
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import Model, Q, Subquery
from django.db.models.sql import InsertQuery, UpdateQuery

from bids.events import Outbox, queue_sends
from bids.models import Bid, LotEvent, Notification
from lots.models import Lot, LotAlias

if TYPE_CHECKING:
    from collections.abc import Iterable


def in_one_statement() -> bool:
    return connection.vendor == "postgresql"


def _alias_rows(lot_id: int, user_ids: Iterable[int]):
    """(user id, label, number) of these bidders' aliases on the lot, and of its last alias (for the next number)."""
    last = LotAlias.objects.filter(lot_id=lot_id).order_by("-number").values("number")[:1]
    return (
        LotAlias.objects.filter(lot_id=lot_id)
        .filter(Q(user_id__in=list(user_ids)) | Q(number=Subquery(last)))
        .order_by()
        .values_list("user_id", "label", "number")
    )


def reserve(*, bids: int, lot_id: int, alias_users: set[int]) -> tuple[list[int] | None, dict[int, str], int]:
    """Ids for `bids` new bids (None where the database assigns them only on insert), the aliases of
    `alias_users` on the lot ({user id: label}), and the lot's last alias number (0 when none was asked for).

    Read after the lot's lock is granted, so the aliases are as committed by earlier bids.
    """
    ids: list[int] | None = None
    if in_one_statement():
        # Only table names and SQL that Django compiled are spliced in; every value is a parameter.
        sql = (
            f"SELECT nextval(pg_get_serial_sequence('{Bid._meta.db_table}', 'id')), "  # noqa: S608
            "NULL::bigint, NULL::varchar, NULL::integer FROM generate_series(1, %s)"
        )
        params: list = [bids]
        if alias_users:
            alias_sql, alias_params = _alias_rows(lot_id, alias_users).query.sql_with_params()
            sql = f"{sql} UNION ALL SELECT NULL::bigint, * FROM ({alias_sql}) AS aliases"  # noqa: S608
            params.extend(alias_params)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        ids = sorted(row[0] for row in rows if row[0] is not None)
        alias_rows = [row[1:] for row in rows if row[0] is None]
    else:
        alias_rows = list(_alias_rows(lot_id, alias_users)) if alias_users else []
    aliases = {user_id: label for user_id, label, _ in alias_rows if user_id in alias_users}
    return ids, aliases, max((number for *_, number in alias_rows), default=0)


def write(*, rows: list[Model], lot: Lot, fields: list[str], outbox: Outbox) -> None:
    """Insert `rows` (with their ids set, or bids on a database that assigns ids on insert) and the outbox's
    events and notifications, and update the lot's `fields`; broadcast after commit (`queue_sends`)."""
    if not in_one_statement():
        groups: dict[type, list[Model]] = {}
        for row in rows:
            groups.setdefault(type(row), []).append(row)
        for model, group in groups.items():
            model.objects.bulk_create(group)
        lot.save(update_fields=fields)
        LotEvent.objects.bulk_create(outbox.events)
        Notification.objects.bulk_create(outbox.notifications)
        queue_sends([outbox])
        return
    parts = []
    for model_rows in (rows, outbox.events):
        groups = {}
        for row in model_rows:
            groups.setdefault(type(row), []).append(row)
        parts.extend(_insert_sql(group) for group in groups.values())
    if fields:
        parts.append(_update_sql(lot, fields))
    if outbox.notifications:
        parts.append(_insert_sql(outbox.notifications, returning=True))
    # Django compiled each part; every value is a parameter.
    ctes = ", ".join(f"w{index} AS ({sql})" for index, (sql, _) in enumerate(parts))
    final = f"SELECT id FROM w{len(parts) - 1}" if outbox.notifications else "SELECT NULL"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {ctes} {final}", list(chain.from_iterable(params for _, params in parts)))
        returned = cursor.fetchall()
    if outbox.notifications:
        # RETURNING gives a multi-row VALUES insert's rows in their order (Django's bulk_create relies on it too).
        for notification, (notification_id,) in zip(outbox.notifications, returned, strict=True):
            notification.id = notification_id
    queue_sends([outbox])


def _insert_sql(objs: list[Model], *, returning: bool = False) -> tuple[str, tuple]:
    """An INSERT of `objs` (one model) as Django's bulk_create would write it: defaults, `auto_now_add`, adapters."""
    opts = objs[0]._meta
    fields = [
        field
        for field in opts.concrete_fields
        if not field.generated and not (field.primary_key and objs[0].pk is None)
    ]
    query = InsertQuery(type(objs[0]))
    query.insert_values(fields, objs)
    compiler = query.get_compiler(connection=connection)
    if returning:
        compiler.returning_fields = [opts.pk]
    [(sql, params)] = compiler.as_sql()
    return sql, params


def _update_sql(lot: Lot, fields: list[str]) -> tuple[str, tuple]:
    query = UpdateQuery(Lot)
    query.add_update_values({name: getattr(lot, Lot._meta.get_field(name).attname) for name in fields})
    query.add_q(Q(pk=lot.pk))
    return query.get_compiler(connection=connection).as_sql()
