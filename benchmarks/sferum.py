"""Benchmark: VK Сферум chats against the sandbox VK API (in its own process) with VK's rate limit enforced.

    python benchmarks/sferum.py [--groups 600] [--size 30] [--processes 200] [--moves 200]
                                [--buffer-url URL] [--shared-limit] [--quick]

A buffer of groups x size studying students (each with a VK ID) and learning processes (a group's students plus
a teacher: the subject chats), on SQLite in a temporary directory (or --buffer-url: an empty database, e.g.
PostgreSQL). VK allows 3 requests a second on the organiser's user token, and the sandbox refuses a fourth
(error 6) by its own clock. That clock is stopped: the client's rate-limit waits move it instead of sleeping, so
the sandbox holds the client to VK's limit exactly while nothing waits. "VK s" is how far the clock moved: what
the same work takes against the real VK at its limit; "wall s" is what Python, the buffer and HTTP took here.

Phases, each step with its requests as the sandbox counted them (by method, and the calls inside `execute`):
1. first creation: run (queues a chat_create per chat), dispatch, run (settles the creates, reads the members);
2. a run with nothing to change: must queue nothing and make no write call; its reads are counted;
3. students moved between groups: run, dispatch, run; the changes (adds + removes) and requests per change,
   with `execute` (25 calls a request) and, moving them back, without it: the ratio is the baseline of this run.
After each phase every chat's members in VK must be exactly the buffer's. Peak RSS of this process and the
sandbox's.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

EPOCH = 1_700_000_000.0  # the sandbox's stopped clock starts here
ORGANISER = 1001
STUDENT_VK, TEACHER_VK = 100_000, 900_000  # student i's VK id is STUDENT_VK + i, teacher p's TEACHER_VK + p
WRITES = ("messages.createChat", "messages.addChatUser", "messages.removeChatUser", "messages.editChat",
          "messages.send", "calls.start", "calls.forceFinish")
QUICK = {"groups": 40, "size": 10, "processes": 12, "moves": 12}


def serve_vk() -> None:
    """The child process: the sandbox VK API with a stopped clock and VK's limit on the user token."""
    from bufsync.sandbox.vk import Person, SandboxConfig, Token, start
    config = SandboxConfig(tokens={"organiser": Token("user", ORGANISER)}, clock=EPOCH, rate_user=3,
                           people=[Person(ORGANISER, "Анна", "Петрова", "teacher")])
    server = start(config=config)
    print(json.dumps({"url": server.url, "admin": config.admin_token, "token": config.tokens["organiser"].value}),
          flush=True)
    sys.stdin.read()  # until the parent closes it
    server.shutdown()


class Vk:
    """The sandbox in its own process; `sleep` moves its clock, and `now` is that clock, kept here."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-vk"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.url, self.admin_token, self.token = info["url"], info["admin"], info["token"]
        self.http = httpx.Client(timeout=300)
        self.now = EPOCH  # the same float sums as the sandbox's clock: both agree to the last bit

    def admin(self, action: str, **args: Any) -> Any:
        answer = self.http.post(f"{self.url}/sandbox/admin", json={"action": action, "args": args},
                                headers={"X-Sandbox-Token": self.admin_token})
        answer.raise_for_status()
        return answer.json()["result"]

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.admin("clock", advance=seconds)

    def client(self, engine: sa.Engine, shared: bool) -> Any:
        """The organiser's client, VK's 3 a second kept by waits that move the clock: one client for every step,
        as one limit holds the run and the dispatchers. `shared`: the limit `bufsync sferum run` and the
        dispatchers use (portal.client_for: a row in the buffer, a window of 1 s + RATE_MARGIN)."""
        from bufsync.portals.sferum.client import VkClient
        from bufsync.portals.sferum.portal import RATE_MARGIN
        from bufsync.queue.limiter import SharedRateLimit, token_key
        from bufsync.state.tables import add_state_tables
        table = add_state_tables(sa.MetaData())["sync_rate_limits"]
        limit = SharedRateLimit(engine, table, token_key("vk", self.token), 3, window=1.0 + RATE_MARGIN,
                                clock=lambda: self.now, sleep=self.sleep) if shared else None
        return VkClient(self.url, self.token, rate=3, clock=lambda: self.now, sleep=self.sleep, limit=limit)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


class World:
    """The buffer, the sandbox and the pieces a Сферум run and a dispatcher are made of."""

    def __init__(self, url: str, config: Path, vk: Vk, shared: bool) -> None:
        from bufsync import migrations
        from bufsync.config import load_settings
        from bufsync.db import create_buffer_engine
        from bufsync.mapping import load_mappings
        from bufsync.portals.sferum.settings import SferumSettings
        from bufsync.schema import build_metadata
        from bufsync.state.tables import add_state_tables
        config.write_text("{}\n", encoding="utf-8")
        self.loaded = load_settings(config, {"BUFSYNC_BUFFER_URL": url})
        self.mappings = load_mappings(self.loaded.mappings_dir)
        migrations.upgrade(self.loaded, self.mappings)
        self.metadata = build_metadata(self.mappings)
        self.tables = dict(self.metadata.tables)
        self.state = add_state_tables(sa.MetaData())
        self.engine = create_buffer_engine(url)  # as the commands make it (SQLite in WAL, batched UPDATEs on PG)
        self.vk = vk
        self.client = vk.client(self.engine, shared)
        self.settings = SferumSettings(url=vk.url, user_token=vk.token, rate_user=3)

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            for start in range(0, len(rows), 5000):
                conn.execute(self.tables[table].insert(), rows[start:start + 5000])

    def wanted(self) -> Any:
        from bufsync.portals.sferum import contingent
        return contingent.read(self.engine, self.metadata, self.mappings, self.settings, date.today())

    def run(self) -> Counter[str]:
        """What `bufsync sferum run` does (scenario.run_scenarios), on this client: the contingent read, the
        organiser asked of VK (users.get), the chats and their members, the notes for 1C."""
        from bufsync.portals.sferum.chats import Chats
        from bufsync.portals.sferum.portal import organiser_of
        from bufsync.portals.sferum.scenario import notes
        from bufsync.report import Tally
        report = Tally()
        wanted = self.wanted()
        organiser = organiser_of(self.client, self.settings)
        Chats(self.engine, self.state, self.client, self.settings, wanted, self.mappings, organiser, report).run()
        notes(self.engine, wanted, self.settings)
        assert not report.problems, report.problems
        return report.counts

    def dispatch(self) -> Counter[str]:
        """What `bufsync queue dispatch --portal sferum` does, on this client."""
        from dataclasses import asdict

        from bufsync.portals.sferum.dispatch import SferumHandler, held_chats
        from bufsync.queue.dispatcher import dispatch
        handler = SferumHandler(self.client, lambda: ORGANISER,
                                held_chats(self.engine, self.state["sync_sferum_chats"], self.state["sync_queue"]),
                                execute=self.settings.execute)
        stats = dispatch(self.engine, self.state["sync_queue"], "sferum", batch_handler=handler,
                         batch=self.settings.batch, lease_seconds=self.settings.lease_seconds, until_empty=True)
        return Counter({k: v for k, v in asdict(stats).items() if v})

    def requests(self) -> tuple[Counter[str], Counter[str], Counter[str]]:
        """The sandbox's counts since reset_counts: requests by method, calls inside execute, errors by code."""
        counts = self.vk.admin("state")
        return (Counter(counts["requests"]["by_method"]), Counter(counts["requests"]["in_execute"]),
                Counter(counts["errors"]))

    def verify(self) -> int:
        """Every chat in VK holds exactly the buffer's people (and the organiser); returns the chats."""
        chats_t = self.state["sync_sferum_chats"]
        with self.engine.connect() as conn:
            ids = {key: chat_id for key, chat_id in conn.execute(sa.select(chats_t.c.chat_key, chats_t.c.chat_id))}
        held = {c["chat_id"]: {m["member_id"] for m in c["members"]} - {ORGANISER}
                for c in self.vk.admin("state")["chats"]}
        wanted = self.wanted().chats
        wrong = [key for key, chat in wanted.items() if held.get(ids.get(key)) != set(chat.vk_ids)]
        assert not wrong and len(held) == len(wanted), (wrong[:5], len(held), len(wanted))
        return len(held)


def fill(w: World, groups: int, size: int, processes: int) -> None:
    students = groups * size
    w.vk.admin("add_people", people=[{"id": STUDENT_VK + i, "first_name": f"Студент{i}", "last_name": "Иванов"}
                                     for i in range(students)]
               + [{"id": TEACHER_VK + p, "first_name": f"Преподаватель{p}", "last_name": "Петрова", "role": "teacher"}
                  for p in range(processes)])
    w.insert("buf_users", [{"external_id": f"S{i:06d}", "username": f"s{i:06d}", "email": f"s{i:06d}@bench.example",
                            "last_name": "Иванов", "first_name": f"Студент{i}", "status": "active",
                            "vk_id": str(STUDENT_VK + i)} for i in range(students)]
             + [{"external_id": f"T{p:04d}", "username": f"t{p:04d}", "email": f"t{p:04d}@bench.example",
                 "last_name": "Петрова", "first_name": f"Преподаватель{p}", "status": "active",
                 "vk_id": f"https://vk.com/id{TEACHER_VK + p}"} for p in range(processes)])
    w.insert("buf_students", [{"person_external_id": f"S{i:06d}", "record_book": f"RB{i:06d}",
                               "group_code": f"G{i // size:04d}", "group_name": f"Группа {i // size:04d}",
                               "status": "studying"} for i in range(students)])
    w.insert("buf_courses", [{"external_id": f"C{p:04d}", "shortname": f"c{p:04d}", "fullname": f"Дисциплина {p}"}
                             for p in range(processes)])
    w.insert("buf_learning_processes", [
        {"external_id": f"LP{p:04d}", "group_code": f"G{p * groups // processes:04d}",
         "course_external_id": f"C{p:04d}", "teacher_external_id": f"T{p:04d}", "semester": 1,
         "start_date": date(2026, 9, 1), "end_date": date(2099, 6, 30)} for p in range(processes)])


def move(w: World, moves: dict[str, int]) -> None:
    """Students to these groups, as 1C rewrites buf_students.group_code."""
    t = w.tables["buf_students"]
    with w.engine.begin() as conn:
        conn.execute(t.update().where(t.c.person_external_id == sa.bindparam("who"))
                     .values(group_code=sa.bindparam("code"), group_name=sa.bindparam("name")),
                     [{"who": who, "code": f"G{g:04d}", "name": f"Группа {g:04d}"} for who, g in moves.items()])


def shown(counts: Counter[str], limit: int = 4) -> str:
    return ", ".join(f"{k.removeprefix('messages.')} {v}" for k, v in counts.most_common(limit)) or "-"


def phase(w: World, title: str, steps: list[tuple[str, Any]]) -> dict[str, Any]:
    """The steps, each printed with its wall and VK seconds, requests and queue items; the phase's totals."""
    print(title)
    w.vk.admin("reset_counts")
    seen: tuple[Counter[str], Counter[str], Counter[str]] = (Counter(), Counter(), Counter())
    total: dict[str, Any] = {"wall": 0.0, "vk": 0.0, "queued": Counter(), "steps": {}}
    for name, work in steps:
        w.vk.sleep(1.0)  # steps start a VK second apart, as jobs do: each step's VK seconds are its own
        clock, started = w.vk.now, time.perf_counter()
        counts = work()
        wall, vk = time.perf_counter() - started, w.vk.now - clock
        now = w.requests()
        by_method, inner, errors = (now[i] - seen[i] for i in range(3))
        seen = now
        queued = Counter({k.removeprefix("queued."): v for k, v in counts.items() if k.startswith("queued.")})
        other = {k: v for k, v in counts.items() if not k.startswith("queued.") and k != "chats.checked"}
        print(f"  {name:<9} wall {wall:6.1f} s  VK {vk:6.1f} s  requests {by_method.total():>5} ({shown(by_method)})"
              + (f"; in execute: {shown(inner)}" if inner else "")
              + (f"; queued {shown(queued)}" if queued else "") + (f"; {other}" if other else "")
              + (f"; VK errors {dict(errors)}" if errors else ""))
        total["wall"] += wall
        total["vk"] += vk
        total["queued"] += queued
        total["steps"][name] = by_method.total()
    by_method, inner, errors = seen
    total.update(requests=by_method.total(), writes=sum(n for c in (by_method, inner) for m, n in c.items()
                                                        if m in WRITES), errors=errors.total())
    print(f"  = {total['requests']} requests ({shown(by_method, 8)}"
          + (f"; in execute: {shown(inner, 8)}" if inner else "") + f"), {total['writes']} write calls, "
          f"VK {total['vk']:.0f} s ({total['vk'] / 60:.1f} min), wall {total['wall']:.1f} s, "
          f"queue items {total['queued'].total()}, VK errors {total['errors']}")
    assert total["errors"] == 0, "VK refused a request: the client broke its limit"
    return total


def moved_phase(w: World, title: str, moves: dict[str, int], execute: bool) -> dict[str, Any]:
    w.settings = w.settings.model_copy(update={"execute": execute})
    move(w, moves)
    result = phase(w, title, [("run", w.run), ("dispatch", w.dispatch), ("run", w.run)])
    w.verify()
    result["changes"] = result["queued"]["member_add"] + result["queued"]["member_remove"]
    assert result["changes"] > 0 and set(result["queued"]) <= {"member_add", "member_remove"}
    per = result["requests"] / result["changes"]
    print(f"  {result['changes']} changes ({result['queued']['member_add']} adds + "
          f"{result['queued']['member_remove']} removes): {per:.3f} requests per change over the phase, "
          f"{result['steps']['dispatch'] / result['changes']:.3f} in the dispatch\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=600)
    parser.add_argument("--size", type=int, default=30, help="studying students a group")
    parser.add_argument("--processes", type=int, default=200, help="learning processes: subject chats")
    parser.add_argument("--moves", type=int, default=200, help="students moved between groups")
    parser.add_argument("--buffer-url", help="an empty database (e.g. PostgreSQL); default: SQLite in a temp dir")
    parser.add_argument("--shared-limit", action="store_true",
                        help="the rate limit kept in the buffer, as `bufsync sferum run` and the dispatchers keep it "
                             "(default: the client's own, exactly VK's 3 a second)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke check: {QUICK}")
    parser.add_argument("--serve-vk", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_vk:
        serve_vk()
        return
    if args.quick:
        vars(args).update(QUICK)
    vk = Vk()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = args.buffer_url or f"sqlite:///{tmp}/buffer.db"
            started = time.perf_counter()
            w = World(url, Path(tmp) / "bufsync.yaml", vk, args.shared_limit)
            fill(w, args.groups, args.size, args.processes)
            students = args.groups * args.size
            chats = args.groups + args.processes
            print(f"buffer {sa.engine.make_url(url).get_backend_name()}: {args.groups} groups x {args.size} = "
                  f"{students} students, {args.processes} subject chats (a group + a teacher); setup "
                  f"{time.perf_counter() - started:.1f} s. VK's limit on: 3 requests/s on the organiser's token, "
                  "the sandbox's clock stopped and moved by the client's waits; the client's limit: "
                  + ("shared through the buffer (1.1 s windows)\n" if args.shared_limit else "its own (1 s windows)\n"))

            first = phase(w, f"1 first creation of {chats} chats", [("run", w.run), ("dispatch", w.dispatch),
                                                                   ("run", w.run)])
            assert first["queued"] == Counter(chat_create=chats), first["queued"]
            assert w.verify() == chats
            print()
            idle = phase(w, "2 a run with nothing to change", [("run", w.run)])
            assert idle["writes"] == 0 and not idle["queued"], idle
            print(f"  reads only: {idle['requests']} requests for {chats} chats "
                  f"(expected ceil({chats}/25) = {-(-chats // 25)} execute + 1 users.get)\n")

            rng = random.Random(1)
            who = sorted(rng.sample(range(students), args.moves))
            there = {f"S{i:06d}": (i // args.size + 1 + rng.randrange(args.groups - 1)) % args.groups for i in who}
            back = {f"S{i:06d}": i // args.size for i in who}
            bundled = moved_phase(w, f"3a {args.moves} students moved between groups, execute on", there, True)
            single = moved_phase(w, f"3b the same {args.moves} moved back, execute off", back, False)

            ratio = (single["requests"] / single["changes"]) / (bundled["requests"] / bundled["changes"])
            writes = (single["steps"]["dispatch"] / single["changes"]) / (bundled["steps"]["dispatch"]
                                                                          / bundled["changes"])
            print(f"first creation: {first['requests']} requests, VK {first['vk'] / 60:.1f} min at 3/s, wall "
                  f"{first['wall']:.1f} s")
            print(f"nothing to change: {idle['requests']} read requests, 0 writes, nothing queued; VK "
                  f"{idle['vk']:.1f} s, wall {idle['wall']:.1f} s")
            print(f"requests per change, without execute / with: {ratio:.1f}x over the phase (run + dispatch + run: "
                  f"{single['requests']} vs {bundled['requests']} requests, VK {single['vk']:.0f} s vs "
                  f"{bundled['vk']:.0f} s); {writes:.1f}x in the dispatch alone "
                  f"({single['steps']['dispatch']} vs {bundled['steps']['dispatch']})")
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"peak RSS: this process (bufsync) {rss:.0f} MB, the sandbox VK API {vk.peak_rss_mb():.0f} MB")
            w.client.close()
            w.engine.dispose()
    finally:
        vk.close()


if __name__ == "__main__":
    main()
