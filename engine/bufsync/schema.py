"""All tables bufsync knows: buffer tables from the mappings plus the engine's own."""

from __future__ import annotations

import sqlalchemy as sa

from bufsync.mapping.loader import MappingSet
from bufsync.mapping.schema import table_for
from bufsync.state.tables import add_state_tables

# Named constraints: MS SQL and alembic need stable names to alter or drop them later.
NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}
VERSION_TABLE = "sync_schema_version"


def build_metadata(mappings: MappingSet) -> sa.MetaData:
    """The tables of these mappings and the engine's; built once per MappingSet (load_mappings hands out the same
    set while the files are unchanged), so the MetaData is shared and never changed by its users."""
    cached: sa.MetaData | None = getattr(mappings, "_metadata", None)
    if cached is not None:
        return cached
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    for mapping in mappings:
        table_for(mapping, metadata)
    add_state_tables(metadata)
    mappings._metadata = metadata  # type: ignore[attr-defined]
    return metadata
