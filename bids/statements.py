"""A bid's statements, as few as the database takes, and each built once.

On PostgreSQL an accepted bid is five statements: BEGIN, the locked read of
its lot with what its checks need (`lock_for_bid`), one that reserves the new
bids' ids (and reads the aliases the locked read could not vouch for), one
that writes every row (bids, alias, events, notifications and the lot, in one
`WITH`), COMMIT. The ids come first because the events carry them, serialized
once. Elsewhere (SQLite, the embedded default) the ORM writes one table at a time.

The locked read is SQL written here, not a queryset: compiling the ORM's
annotated query took longer than the whole transaction's time in the database.
On PostgreSQL the statements are bound server-side (`_cursor`), so psycopg
prepares each once per connection: planning them took longer than running them.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING

from django.db import connection
from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.models import Model, Q, Subquery

from accounts.models import User
from bids.models import Bid
from lots.events import Outbox, queue_sends
from lots.models import Auction, Lot, LotAlias, LotStatus, Registration
from ops.exceptions import NotFound

if TYPE_CHECKING:
    from collections.abc import Iterable


def in_one_statement() -> bool:
    return connection.vendor == "postgresql"


def _cursor():
    """On PostgreSQL, a cursor that binds parameters server-side: psycopg prepares a statement once it has run
    `prepare_threshold` times on the connection (settings). Django's own cursors bind client-side and never do."""
    if not in_one_statement():
        return connection.cursor()
    connection.ensure_connection()
    cursor = ServerBindingCursor(connection.connection)
    return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)


# A bidder as a bid's transaction reads them: their account, their registration in the lot's sale, their alias.
_BIDDER_COLUMNS = """bidder.is_active AS bidder_is_active, bidder.password AS bidder_password,
    bidder.session_epoch AS bidder_session_epoch,
    registration.status AS bidder_registration, registration.paddle_number AS bidder_paddle,
    alias.label AS bidder_alias"""
_BIDDER_JOINS = f"""LEFT JOIN {Registration._meta.db_table} AS registration
    ON registration.auction_id = lot.auction_id AND registration.user_id = bidder.id
LEFT JOIN {LotAlias._meta.db_table} AS alias ON alias.lot_id = lot.id AND alias.user_id = bidder.id"""

_LOT_FIELDS = Lot._meta.concrete_fields
# Named columns, not `lot.*`: a prepared statement's result may not change shape when a migration adds a column.
_LOCK_FOR_BID = f"""
SELECT {", ".join(f'lot."{field.column}"' for field in _LOT_FIELDS)}, sale.slug AS sale_slug, sale.requires_registration AS sale_requires_registration, {_BIDDER_COLUMNS},
    (SELECT label FROM {LotAlias._meta.db_table} WHERE lot_id = lot.id AND user_id = lot.high_bidder_id) AS leader_alias
FROM {Lot._meta.db_table} AS lot
LEFT JOIN {Auction._meta.db_table} AS sale ON sale.id = lot.auction_id
LEFT JOIN {User._meta.db_table} AS bidder ON bidder.id = %(bidder)s
{_BIDDER_JOINS}
WHERE lot.id = %(lot)s AND (%(staff)s OR lot.status <> '{LotStatus.DRAFT.value}' OR lot.seller_id = %(bidder)s)
"""  # noqa: S608 -- table names only; every value is a parameter

_READ_BIDDERS = f"""
SELECT bidder.id, {_BIDDER_COLUMNS}
FROM {User._meta.db_table} AS bidder
JOIN {Lot._meta.db_table} AS lot ON lot.id = %s
{_BIDDER_JOINS}
WHERE bidder.id IN ({{placeholders}})
"""  # noqa: S608 -- table names only; every value is a parameter


@dataclass(frozen=True)
class Bidder:
    """A bidder's row, registration in the lot's sale and alias on the lot, as the bid's transaction read them."""

    is_active: bool | None  # None: the account is gone
    password: str | None
    session_epoch: int | None
    registration: str | None
    paddle: int | None
    alias: str | None

    @classmethod
    def of_locked(cls, lot: Lot) -> Bidder:
        """The bidder `lock_for_bid` read beside the lot."""
        return cls(
            lot.bidder_is_active,
            lot.bidder_password,
            lot.bidder_session_epoch,
            lot.bidder_registration,
            lot.bidder_paddle,
            lot.bidder_alias,
        )


def read_bidders(*, lot: Lot, user_ids: list[int]) -> dict[int, Bidder]:
    """The other bidders of a batch, read after the lot's lock was granted: {user id: Bidder}."""
    with _cursor() as cursor:
        cursor.execute(_READ_BIDDERS.format(placeholders=", ".join(["%s"] * len(user_ids))), [lot.pk, *user_ids])
        return {row[0]: Bidder(*row[1:]) for row in cursor.fetchall()}


def lock_for_bid(lot_id: int, bidder) -> Lot:
    """The lot with its row locked (a draft only for its seller and staff, as `lots.selectors.visible_to`),
    annotated with what a bid checks besides it. Raises `lot_not_found`.

    Annotations: the bidder's (`Bidder.of_locked`) and `leader_alias`; `lot.auction` holds the
    sale's slug and `requires_registration` only.
    They come from the statement's snapshot, taken before the lock was granted: right for
    what no other bid changes (the bidder's account, registration and own alias), but the
    leader's alias may be missing when the bid that held the lock was its leader's first (`reserve` reads it then).
    """
    sql = _LOCK_FOR_BID + (" FOR UPDATE OF lot" if connection.features.has_select_for_update_of else "")
    with _cursor() as cursor:
        cursor.execute(sql, {"lot": lot_id, "bidder": bidder.pk, "staff": bidder.is_staff})
        row = cursor.fetchone()
        annotations = [column[0] for column in cursor.description[len(_LOT_FIELDS) :]]
    if row is None:
        raise NotFound("lot_not_found", "No such lot.")
    values = [
        _converted(value, converters, column)
        for value, (converters, column) in zip(row[: len(_LOT_FIELDS)], _lot_converters(), strict=True)
    ]
    lot = Lot.from_db(connection.alias, [field.attname for field in _LOT_FIELDS], values)
    for name, value in zip(annotations, row[len(_LOT_FIELDS) :], strict=True):
        setattr(lot, name, value)
    if lot.auction_id is not None:
        sale = Auction.from_db(
            connection.alias,
            ["id", "slug", "requires_registration"],
            [lot.auction_id, lot.sale_slug, lot.sale_requires_registration],
        )
        Lot.auction.field.set_cached_value(lot, sale)
    return lot


def _converted(value, converters, column):
    for converter in converters:
        value = converter(value, column, connection)
    return value


_LOT_CONVERTERS: dict[str, list] = {}


def _lot_converters() -> list:
    """Per lot column, what the ORM applies to a value read from the database (the backend's, then the field's)."""
    if connection.vendor not in _LOT_CONVERTERS:
        columns = [field.get_col(Lot._meta.db_table) for field in _LOT_FIELDS]
        _LOT_CONVERTERS[connection.vendor] = [
            ([*connection.ops.get_db_converters(column), *field.get_db_converters(connection)], column)
            for field, column in zip(_LOT_FIELDS, columns, strict=True)
        ]
    return _LOT_CONVERTERS[connection.vendor]


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
        with _cursor() as cursor:
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
        outbox.flush()
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
    # Only table and column names are spliced in; every value is a parameter.
    ctes = ", ".join(f"w{index} AS ({sql})" for index, (sql, _) in enumerate(parts))
    final = f"SELECT id FROM w{len(parts) - 1}" if outbox.notifications else "SELECT NULL"  # noqa: S608
    with _cursor() as cursor:
        cursor.execute(f"WITH {ctes} {final}", list(chain.from_iterable(params for _, params in parts)))
        returned = cursor.fetchall()
    if outbox.notifications:
        # RETURNING gives a multi-row VALUES insert's rows in their order (Django's bulk_create relies on it too).
        for notification, (notification_id,) in zip(outbox.notifications, returned, strict=True):
            notification.id = notification_id
    queue_sends([outbox])


def _insert_sql(objs: list[Model], *, returning: bool = False) -> tuple[str, list]:
    """An INSERT of `objs` (one model), values prepared as `bulk_create` prepares them (`auto_now_add`, adapters)."""
    opts = objs[0]._meta
    fields = [
        field
        for field in opts.concrete_fields
        if not field.generated and not (field.primary_key and objs[0].pk is None)
    ]
    quote = connection.ops.quote_name
    row = f"({', '.join(['%s'] * len(fields))})"
    sql = f"INSERT INTO {quote(opts.db_table)} ({', '.join(quote(field.column) for field in fields)}) VALUES {', '.join([row] * len(objs))}"  # noqa: S608
    if returning:
        sql += f" RETURNING {quote(opts.pk.column)}"
    return sql, [field.get_db_prep_save(field.pre_save(obj, True), connection) for obj in objs for field in fields]


def _update_sql(lot: Lot, names: list[str]) -> tuple[str, list]:
    fields = [Lot._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = f"UPDATE {quote(Lot._meta.db_table)} SET {assignments} WHERE {quote(Lot._meta.pk.column)} = %s"  # noqa: S608
    return sql, [*(field.get_db_prep_save(getattr(lot, field.attname), connection) for field in fields), lot.pk]
