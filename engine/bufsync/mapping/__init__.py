"""Mapping files: the single source of truth for buffer tables, DDL, migrations and flows."""

from bufsync.mapping.loader import MappingSet, load_mappings
from bufsync.mapping.model import Mapping

__all__ = ["Mapping", "MappingSet", "load_mappings"]
