"""Alembic environment of bufsync: target metadata comes from the mapping files.

bufsync.migrations builds the Config and puts the metadata, the connection (online) or the
dialect URL (offline, `bufsync db upgrade --sql`) into `config.attributes`.
"""

from alembic import context

from bufsync.migrations import configure_context

configure_context(context)
