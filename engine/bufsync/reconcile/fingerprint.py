"""Fingerprints computed by the database, so a run with nothing to do moves no rows to Python.

The fingerprint of a buffer row is md5 over its hashed columns (the sources of every field
written on update, and the status column), the remote ids its lookups resolve to through the
other mappings' ledger, and its attached rows (buf_user_fields). The scan query compares it
with the ledger's content_hash in SQL and returns only the keys that changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bufsync.dialects.base import BufferDialect
from bufsync.mapping.loader import MappingSet
from bufsync.mapping.model import Mapping
from bufsync.state.ledger import ERROR, LINKED, SUSPENDED

NULL = "\x01"     # stands for NULL inside the hashed text (PostgreSQL text cannot hold NUL)
SEP = "\x1f"      # between parts


@dataclass
class Parts:
    key: sa.ColumnElement[Any]           # the ledger's record_key for the row
    fingerprint: sa.ColumnElement[Any]
    joins: list[tuple[sa.FromClause, sa.ColumnElement[bool]]]  # the lookups' ledger aliases, the attached rows


def _text(dialect: BufferDialect, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(dialect.text(column), NULL)


def key_expression(dialect: BufferDialect, table: sa.Table, mapping: Mapping) -> sa.ColumnElement[Any]:
    """What ledger.record_key() writes: the value, or ["a", "b"] for a composite key."""
    columns = [dialect.text(table.c[name]) for name in mapping.flow.key]
    if len(columns) == 1:
        return columns[0]
    expression = sa.literal('["', sa.String()) + columns[0]
    for column in columns[1:]:
        expression = expression + sa.literal('", "', sa.String()) + column
    return expression + sa.literal('"]', sa.String())


def parts(dialect: BufferDialect, mappings: MappingSet, tables: dict[str, sa.Table], ledger: sa.Table,
          mapping: Mapping, hash_columns: Sequence[str]) -> Parts:
    table = tables[mapping.table.name]
    texts: list[sa.ColumnElement[Any]] = [_text(dialect, table.c[name]) for name in hash_columns]
    joins: list[tuple[sa.FromClause, sa.ColumnElement[bool]]] = []
    # a field with a lookup always has a source (FieldMap's own check)
    looked_up = [(s.lookup, s.source) for s in mapping.flow.fields.values() if s.lookup and s.source is not None]
    for index, (lookup, source) in enumerate(looked_up):
        other = ledger.alias(f"lookup_{index}")
        on = sa.and_(other.c.mapping_name == lookup,
                     other.c.record_key == dialect.text(table.c[source]),
                     other.c.state.in_([LINKED, SUSPENDED]))
        joins.append((other, on))
        # a number (remote_id) or text (remote_key): coalesced, the hash of a numeric id is what it always was
        texts.append(sa.func.coalesce(dialect.text(other.c.remote_id), other.c.remote_key, NULL))
    for child in mappings.attached_to(mapping.name):
        spec = child.attach
        assert spec is not None  # attached_to() gives the mappings whose role is attach
        child_table = tables[child.table.name]
        pair = dialect.text(child_table.c[spec.name_column]) + sa.literal("=", sa.String()) + \
            _text(dialect, child_table.c[spec.value_column])
        grouped = dialect.aggregate(pair, child_table.c[spec.name_column],
                                    [child_table.c[column] for column in spec.join], SEP + SEP)
        joins.append((grouped, sa.and_(*(grouped.c[column] == table.c[parent]
                                         for column, parent in spec.join.items()))))
        texts.append(sa.func.coalesce(grouped.c.agg, NULL))
    text = texts[0] if texts else sa.literal(NULL, sa.String())
    for part in texts[1:]:
        text = text + sa.literal(SEP, sa.String()) + part
    return Parts(key_expression(dialect, table, mapping), dialect.md5(text), joins)


def scan_query(dialect: BufferDialect, mappings: MappingSet, tables: dict[str, sa.Table], ledger: sa.Table,
               mapping: Mapping, hash_columns: Sequence[str], full: bool) -> sa.Select[Any]:
    """(key, class) for every row that is not unchanged; class 'f' = failed before, unchanged since.

    Joins only (no correlated subqueries) and the fingerprint computed once per row, so the
    database can hash-join the buffer, the ledger and the lookups in one pass.
    """
    table = tables[mapping.table.name]
    p = parts(dialect, mappings, tables, ledger, mapping, hash_columns)
    own = ledger.alias("own")
    source = table.join(own, sa.and_(own.c.mapping_name == mapping.name, own.c.record_key == p.key), isouter=True)
    for other, on in p.joins:
        source = source.join(other, on, isouter=True)
    roles = mapping.table.writeback.columns() if mapping.table.writeback else {}
    wanted = [p.key.label("k"), p.fingerprint.label("fp"), own.c.content_hash.label("h"), own.c.state.label("st"),
              sa.func.coalesce(own.c.last_error, "").label("le"), sa.func.coalesce(own.c.remote_id, -1).label("ri")]
    wanted.append(table.c[roles["status"]].label("ws") if "status" in roles else sa.literal(None).label("ws"))
    wanted.append(table.c[roles["error"]].label("we") if "error" in roles else sa.literal(None).label("we"))
    wanted.append(sa.func.coalesce(table.c[roles["remote_id"]], -1).label("wr") if "remote_id" in roles
                  else sa.literal(None).label("wr"))
    row = sa.select(*wanted).select_from(source).subquery()
    ok_row: list[sa.ColumnElement[bool]] = [row.c.st.in_([LINKED, SUSPENDED])]
    failed_row: list[sa.ColumnElement[bool]] = [row.c.st == ERROR]
    # an applied row reads ok with no error, or warning with the ledger's note of what was not kept
    if "status" in roles and "error" in roles:
        ok_row.append(sa.or_(sa.and_(row.c.ws == "ok", row.c.we.is_(None), row.c.le == ""),
                             sa.and_(row.c.ws == "warning", row.c.we == row.c.le)))
    elif "status" in roles:
        ok_row.append(row.c.ws.in_(["ok", "warning"]))
    elif "error" in roles:
        ok_row.append(sa.func.coalesce(row.c.we, "") == row.c.le)
    if "status" in roles:
        failed_row.append(row.c.ws.in_(["error", "skipped"]))
    if "error" in roles:
        failed_row.append(sa.func.coalesce(row.c.we, "") == row.c.le)
    if "remote_id" in roles:
        ok_row.append(row.c.wr == row.c.ri)
    same = row.c.h == row.c.fp
    verdict = sa.literal("c", sa.String()) if full else \
        sa.case((sa.and_(same, *ok_row), "u"), (sa.and_(same, *failed_row), "f"), else_="c")
    judged = sa.select(row.c.k, verdict.label("v")).subquery()
    return sa.select(judged.c.k, judged.c.v).where(judged.c.v != "u")


def stream_query(dialect: BufferDialect, mappings: MappingSet, tables: dict[str, sa.Table], ledger: sa.Table,
                 mapping: Mapping, hash_columns: Sequence[str], keys: list[str] | None = None) -> sa.Select[Any]:
    """Every column of the table plus its fingerprint, in key order (pass two); only `keys`, if given."""
    table = tables[mapping.table.name]
    p = parts(dialect, mappings, tables, ledger, mapping, hash_columns)
    source: sa.FromClause = table
    for other, on in p.joins:
        source = source.join(other, on, isouter=True)
    query = (sa.select(*table.c, p.fingerprint.label("_fingerprint"), p.key.label("_key")).select_from(source)
             .order_by(*(table.c[name] for name in mapping.flow.key)))
    return query if keys is None else query.where(p.key.in_(keys))


def missing_query(dialect: BufferDialect, tables: dict[str, sa.Table], ledger: sa.Table,
                  mapping: Mapping) -> sa.Select[Any]:
    """Ledger keys, linked or suspended, whose row is gone from the buffer."""
    table = tables[mapping.table.name]
    present = sa.select(sa.literal(1)).select_from(table).where(
        key_expression(dialect, table, mapping) == ledger.c.record_key)
    return sa.select(ledger).where(ledger.c.mapping_name == mapping.name,
                                   ledger.c.state.in_([LINKED, SUSPENDED]), ~present.exists())
