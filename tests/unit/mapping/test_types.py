import pytest
from sqlalchemy.dialects import mssql, postgresql, sqlite

from bufsync.mapping.types import parse_type


@pytest.mark.parametrize("text, pg, ms, lite", [
    ("string(64)", "VARCHAR(64)", "NVARCHAR(64)", "VARCHAR(64)"),
    ("text", "TEXT", "NVARCHAR(max)", "TEXT"),
    ("integer", "INTEGER", "INTEGER", "INTEGER"),
    ("bigint", "BIGINT", "BIGINT", "BIGINT"),
    ("decimal(10,5)", "NUMERIC(10, 5)", "NUMERIC(10, 5)", "NUMERIC(10, 5)"),
    ("boolean", "BOOLEAN", "BIT", "BOOLEAN"),
    ("date", "DATE", "DATE", "DATE"),
    ("datetime", "TIMESTAMP WITHOUT TIME ZONE", "DATETIME2", "DATETIME"),
])
def test_portable_types_per_dialect(text: str, pg: str, ms: str, lite: str) -> None:
    t = parse_type(text).sqlalchemy()
    assert t.compile(dialect=postgresql.dialect()) == pg
    assert t.compile(dialect=mssql.dialect()) == ms
    assert t.compile(dialect=sqlite.dialect()) == lite


@pytest.mark.parametrize("text, message", [
    ("varchar(10)", "unknown column type"),
    ("string", "needs a length"),
    ("string(5000)", "1..4000"),
    ("decimal(10)", "precision and scale"),
    ("decimal(3,5)", "s <= p"),
    ("integer(4)", "takes no length"),
])
def test_bad_types(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_type(text)
