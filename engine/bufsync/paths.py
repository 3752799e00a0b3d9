"""Where the shipped data folders are, installed or in a checkout.

setup.cfg installs `mappings/` and `alembic/` inside the package (`bufsync/mappings`,
`bufsync/migrations`); in a checkout (and an editable install) they sit at its top, beside `engine/`.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _shipped(installed: str, checkout: str) -> Path:
    inside = _HERE / installed
    return inside if inside.is_dir() else _HERE.parents[1] / checkout


def shipped_mappings_dir() -> Path:
    return _shipped("mappings", "mappings")


def shipped_migrations_dir() -> Path:
    return _shipped("migrations", "alembic")
