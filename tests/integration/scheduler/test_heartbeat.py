"""Two daemons (or hosts) starting at once both create a job's heartbeat row: neither may crash."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from bufsync import migrations
from bufsync.mapping import load_mappings
from bufsync.scheduler import heartbeat
from bufsync.state.tables import add_state_tables


def test_concurrent_ensure_of_the_same_job(buffer_url: str, settings_for) -> None:
    loaded = settings_for(buffer_url)
    migrations.upgrade(loaded, load_mappings(loaded.mappings_dir))
    engine = sa.create_engine(buffer_url, connect_args={"timeout": 30} if buffer_url.startswith("sqlite") else {})
    table = add_state_tables(sa.MetaData())["sync_heartbeat"]
    errors: list[Exception] = []

    def start() -> None:
        try:
            with engine.begin() as conn:
                heartbeat.ensure(conn, table, "people", None, None)
        except Exception as exc:  # what a daemon would die of
            errors.append(exc)

    for _ in range(15):
        with engine.begin() as conn:
            conn.execute(table.delete())
        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    engine.dispose()
    assert errors == []
