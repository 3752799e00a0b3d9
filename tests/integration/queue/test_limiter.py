"""The shared rate limit on real databases: the rate over many sends, the sliding window, two "processes" (two
engines) on one key, independent keys, no limit, threads; the fake clock moves only when the limiter sleeps, so
nothing here waits or depends on the machine's speed. One test runs real processes on PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bufsync import migrations
from bufsync.config import load_settings
from bufsync.db import create_buffer_engine
from bufsync.mapping import load_mappings
from bufsync.queue.limiter import SharedRateLimit, token_key
from bufsync.state.tables import add_state_tables
from tests.integration.queue.limiter_worker import stamper

EPSILON = 0.05  # seconds a real send may trail the stamp the limiter stored for it (the real-process test)
START = 1_800_000_000.0  # a fake clock's first reading: seconds since 1970, exact in binary like every step below


class FakeTime:
    """A clock that only moves when somebody sleeps (the limiter, or the test); shared by threads. `last()` is
    this thread's last reading: after wait() returns, the stamp the limiter stored for the send."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self._lock = threading.Lock()
        self._read = threading.local()

    def clock(self) -> float:
        with self._lock:
            self._read.value = self.now
            return self.now

    def last(self) -> float:
        return float(self._read.value)

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def most_in_a_window(stamps: list[float], window: float) -> int:
    """The most sends in any half-open window [t, t + window)."""
    stamps = sorted(stamps)
    return max((sum(1 for s in stamps[i:] if s - t < window) for i, t in enumerate(stamps)), default=0)


@pytest.fixture
def limits(_upgraded_buffer: None, buffer_url: str) -> Iterator[tuple[str, sa.Table, list[sa.Engine]]]:
    """An upgraded buffer, the sync_rate_limits table, and the engines a test made (disposed after it)."""
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": buffer_url})
    migrations.upgrade(loaded, load_mappings(loaded.mappings_dir))
    engines: list[sa.Engine] = []
    yield buffer_url, add_state_tables(sa.MetaData())["sync_rate_limits"], engines
    for engine in engines:
        engine.dispose()


def limiter(limits: tuple[str, sa.Table, list[sa.Engine]], fake: FakeTime, key: str = "vk:user-a", rate: int = 3,
            window: float = 1.0) -> SharedRateLimit:
    """A limiter on an engine of its own, as another dispatcher process would have."""
    url, table, engines = limits
    engines.append(create_buffer_engine(url))
    return SharedRateLimit(engines[-1], table, key, rate, window=window, clock=fake.clock, sleep=fake.sleep)


def send(limit: SharedRateLimit, fake: FakeTime) -> float:
    limit.wait()
    return fake.last()


def test_the_rate_holds_over_many_sends(limits) -> None:
    fake = FakeTime()
    limit = limiter(limits, fake)
    stamps = [send(limit, fake) for _ in range(30)]
    assert most_in_a_window(stamps, 1.0) == 3
    assert stamps == [START + i // 3 for i in range(30)]  # and it waits no longer than it must
    _, table, engines = limits
    with engines[0].connect() as conn:
        row = conn.execute(sa.select(table)).one()
    assert row.limit_key == "vk:user-a" and json.loads(row.sent) == [START + 9] * 3  # only the last `rate` kept


def test_the_window_slides(limits) -> None:
    fake = FakeTime()
    limit = limiter(limits, fake)
    for at in (0.0, 0.5, 0.75):
        fake.now = START + at
        assert send(limit, fake) == START + at
    fake.now = START + 0.875
    assert send(limit, fake) == START + 1.0  # the send at 0.0 left the window
    assert send(limit, fake) == START + 1.5  # then the one at 0.5
    assert send(limit, fake) == START + 1.75
    assert fake.sleeps == [0.125, 0.5, 0.25]
    fake.now = START + 10
    assert [send(limit, fake) for _ in range(3)] == [START + 10] * 3  # an idle token sends at once again


def test_two_processes_on_one_key_share_the_limit(limits) -> None:
    fake = FakeTime()
    first, second = limiter(limits, fake), limiter(limits, fake)
    stamps = [send(first if i % 2 else second, fake) for i in range(20)]
    assert most_in_a_window(stamps, 1.0) == 3
    assert stamps == [START + i // 3 for i in range(20)]


def test_different_keys_are_independent(limits) -> None:
    fake = FakeTime()
    user, community = limiter(limits, fake, token_key("vk", "user-token")), limiter(
        limits, fake, token_key("vk", "community-token"), rate=20)
    assert [send(user, fake) for _ in range(3)] + [send(community, fake) for _ in range(20)] == [START] * 23
    assert fake.sleeps == []
    assert send(user, fake) == START + 1
    _, table, engines = limits
    with engines[0].connect() as conn:
        keys = set(conn.execute(sa.select(table.c.limit_key)).scalars())
    assert len(keys) == 2 and not any("token" in k for k in keys)  # the tokens themselves are never stored


def test_rate_zero_never_waits_nor_writes(limits) -> None:
    fake = FakeTime()
    for rate in (0, -1):
        limit = limiter(limits, fake, rate=rate)
        for _ in range(50):
            limit.wait()
    assert fake.sleeps == []
    _, table, engines = limits
    with engines[0].connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0


def test_threads_of_one_process_share_the_limit(limits) -> None:
    fake = FakeTime()
    limit = limiter(limits, fake, rate=4)
    stamps: list[float] = []

    def sender() -> None:
        for _ in range(6):
            stamps.append(send(limit, fake))

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(stamps) == 24 and most_in_a_window(stamps, 1.0) == 4
    assert sorted(stamps) == [START + i // 4 for i in range(24)]


def test_a_host_with_a_clock_far_ahead_does_not_stall_the_others(limits) -> None:
    """Its sends, stamped an hour ahead, are not honoured by a host an hour behind it (the module's docstring)."""
    ahead, behind = FakeTime(START + 3600), FakeTime()
    assert [send(limiter(limits, ahead), ahead) for _ in range(3)] == [START + 3600] * 3
    assert [send(limiter(limits, behind), behind) for _ in range(3)] == [START] * 3
    assert behind.sleeps == []


@pytest.mark.postgres
def test_real_processes_on_postgresql_share_the_limit(_pg_upgraded_url: str, tmp_path: Path) -> None:
    """Three processes, 10 sends each at 5 per 0.2 s, with the real clock. The stamps the limiter stored keep the
    limit exactly. The times each process read just after wait() returned trail their stamps by the update, its
    commit and the scheduler (median 4-8 ms, up to 25-48 ms on a 2-core machine at load 7), so sends can bunch by
    that much: they are checked against the window less EPSILON.

    forkserver, not spawn: the server imports SQLAlchemy and the limiter once and forks each process from itself
    (a clean interpreter, like spawn, not a copy of pytest), so three processes start in the time of one."""
    rate, window, sends, processes = 5, 0.2, 8, 3
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.integration.queue.limiter_worker"])
    start = context.Barrier(processes)
    outs = [tmp_path / f"{i}.json" for i in range(processes)]
    workers = [context.Process(target=stamper, args=(_pg_upgraded_url, "vk:shared", sends, rate, window, str(out),
                                                     start)) for out in outs]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    results = [json.loads(out.read_text()) for out in outs]
    stored = sorted(s for r in results for s in r["stored"])
    sent = sorted(s for r in results for s in r["sent"])
    assert len(stored) == len(sent) == sends * processes
    assert all(stored[i + rate] - stored[i] >= window for i in range(len(stored) - rate))
    assert most_in_a_window(sent, window - EPSILON) <= rate
    # the three sent side by side: the limit, not one process after another, set the pace
    owners = sorted((s, n) for n, r in enumerate(results) for s in r["stored"])
    assert len({n for _, n in owners[:rate * 2]}) >= 2
