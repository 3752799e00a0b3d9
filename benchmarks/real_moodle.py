"""Benchmark: bufsync against Moodle's own auth_db + enrol_database on a real Moodle 4.5, in one window.

    MOODLE_SRC=... ../shared/moodle-real/up --reset && set -a && . /srv/moodle-real/test.env && set +a
    python benchmarks/real_moodle.py [--people 3000 --courses 60 --per-person 3 --rounds 3]

The same generated 1C-like buffer is loaded twice into PostgreSQL, under two prefixes (so the two tools never
meet on the site): bufsync runs on one as a whole `bufsync run` process with its default settings, the
incumbents on the other through `../shared/moodle-real/incumbents.php` and Moodle's scheduled tasks
(`\\auth_db\\task\\sync_users`, then `\\enrol_database\\task\\sync_enrolments`). Printed, each with the ratio
bufsync / incumbents and the issue's goal:
- the first load;
- a run with nothing to do (min / median of the rounds), and `bufsync --version`;
- a change run: 30 people renamed, 30 removed (with their enrolments), 300 more enrolments removed and 300
  added, the same changes in both buffers (min / median of the rounds; different people each round);
- `bufsync run --full` right after (it reads Moodle through and must repair nothing), against the first load;
- per bufsync run: Moodle calls and the process's peak memory.
Each bufsync figure counts only if the run ended ok and Moodle holds what the buffer asks (checked by reading
the site back at the end). The Moodle site keeps what was created: `up --reset` before the next run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

RENAMED, REMOVED, UNENROLLED, ENROLLED = 30, 30, 300, 300
MOODLE_REAL = Path(os.environ.get("MOODLE_REAL_DIR", "/srv/moodle-real"))
INCUMBENTS_PHP = Path(__file__).resolve().parents[2] / "shared" / "moodle-real" / "incumbents.php"
TASKS = ("\\auth_db\\task\\sync_users", "\\enrol_database\\task\\sync_enrolments")




import reconcile as _shared

fresh_database, drop_database, fill = _shared.fresh_database, _shared.drop_database, _shared.fill


class Timed:
    """A child process timed as a whole: wall seconds and its own peak memory (os.wait4)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        self.output = proc.stdout.read().decode("utf-8", "replace")
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        self.seconds = time.perf_counter() - started
        self.rc = proc.returncode
        self.peak_mb = usage.ru_maxrss / 1024

    def check(self, what: str, allowed: tuple[int, ...] = (0,)) -> Timed:
        if self.rc not in allowed:
            sys.exit(f"{what} failed (exit {self.rc}):\n{self.output[-3000:]}")
        return self


class Incumbents:
    def __init__(self, database: str) -> None:
        self.moodle = MOODLE_REAL / "moodle"
        self.env = dict(os.environ, PHP_INI_SCAN_DIR=f":{MOODLE_REAL / 'php'}")
        php = INCUMBENTS_PHP if INCUMBENTS_PHP.exists() else Path(os.environ.get("BUFSYNC_INCUMBENTS_PHP", ""))
        Timed(["php", str(php), f"--db={database}"], self.env, self.moodle).check("incumbents.php")

    def run(self) -> float:
        seconds = 0.0
        for task in TASKS:
            timed = Timed(["php", "admin/cli/scheduled_task.php", f"--execute={task}"], self.env, self.moodle)
            seconds += timed.check(task).seconds
        return seconds

    def off(self) -> None:
        php = INCUMBENTS_PHP if INCUMBENTS_PHP.exists() else Path(os.environ.get("BUFSYNC_INCUMBENTS_PHP", ""))
        Timed(["php", str(php), "--off"], self.env, self.moodle)


class Bufsync:
    def __init__(self, url: str, moodle: str, token: str, workdir: Path) -> None:
        self.url = url
        self.env = dict(os.environ, BUFSYNC_BUFFER_URL=url, BUFSYNC_MOODLE_URL=moodle, BUFSYNC_MOODLE_TOKEN=token)
        self.workdir = workdir
        self.cli = str(Path(sys.executable).with_name("bufsync"))
        self.runs: list[dict[str, Any]] = []

    def run(self, title: str, *args: str) -> float:
        timed = Timed([self.cli, "run", *args], self.env, self.workdir)
        engine = sa.create_engine(self.url)
        with engine.connect() as conn:
            last = conn.execute(sa.text("SELECT outcome, counts FROM sync_runs WHERE kind = 'sync' "
                                        "ORDER BY id DESC LIMIT 1")).one()
        engine.dispose()
        counts = json.loads(last.counts or "{}")
        calls = sum(int(m.get("moodle_calls", 0)) for m in counts.values() if isinstance(m, dict))
        if last.outcome != "ok":
            sys.exit(f"bufsync run {' '.join(args)} ended {last.outcome}: a figure counts only for a run that did "
                     f"the job\n{timed.output[-3000:]}")
        repaired = sum(int(m.get("repaired", 0)) for m in counts.values() if isinstance(m, dict))
        self.runs.append({"title": title, "seconds": timed.seconds, "calls": calls, "peak_mb": timed.peak_mb,
                          "repaired": repaired})
        return timed.seconds

    def version(self) -> float:
        return min(Timed([self.cli, "--version"], self.env, self.workdir).check("bufsync --version").seconds
                   for _ in range(5))


def change(url: str, prefix: str, round_no: int, people: int, courses: int, per_person: int) -> None:
    """One round's 1C changes, the same in both buffers: renames at the bottom of the list, removals at the top,
    enrolments removed and added in the middle; every round takes other people."""
    bottom = round_no * RENAMED
    top = people - (round_no + 1) * REMOVED
    middle = 8 * RENAMED + round_no * ENROLLED
    users, subs = (sa.table(t, *(sa.column(c) for c in cols)) for t, cols in (
        ("buf_users", ("external_id", "last_name")),
        ("buf_subscriptions", ("user_external_id", "course_external_id", "role", "status"))))
    uid = [f"{prefix}U{i:07d}" for i in range(people)]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for i in range(bottom, bottom + RENAMED):
            conn.execute(sa.update(users).where(users.c.external_id == uid[i])
                         .values(last_name=f"Переименов{i}-{round_no}"))
        gone = uid[top:top + REMOVED]
        conn.execute(sa.delete(subs).where(subs.c.user_external_id.in_(gone)))
        conn.execute(sa.delete(users).where(users.c.external_id.in_(gone)))
        dropped = UNENROLLED - REMOVED * per_person
        for i in range(middle, middle + dropped):
            conn.execute(sa.delete(subs).where(subs.c.user_external_id == uid[i],
                                               subs.c.course_external_id == f"{prefix}C{(i * 7) % courses:05d}"))
        held = {(r[0], r[1]) for r in conn.execute(sa.select(subs.c.user_external_id, subs.c.course_external_id))}
        added = []
        for i in range(middle, people):
            if len(added) == ENROLLED:
                break
            course = f"{prefix}C{(i * 7 + 3 * 131 + 1) % courses:05d}"
            if (uid[i], course) not in held:
                added.append({"user_external_id": uid[i], "course_external_id": course, "role": "student",
                              "status": "active"})
        conn.execute(sa.insert(subs), added)
    engine.dispose()


def check_world(url: str, moodle: str, token: str) -> None:
    """What the buffer asks is what Moodle holds: every active person's account and every enrolment."""
    from bufsync.adapters.moodle.client import MoodleClient
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        people = {r.external_id: (r.username, r.last_name) for r in conn.execute(sa.text(
            "SELECT external_id, username, last_name FROM buf_users"))}
        courses = {r.external_id: r.lms_id
                   for r in conn.execute(sa.text("SELECT external_id, lms_id FROM buf_courses"))}
        wanted: dict[str, set[str]] = {}
        for r in conn.execute(sa.text("SELECT user_external_id, course_external_id FROM buf_subscriptions")):
            wanted.setdefault(r.course_external_id, set()).add(r.user_external_id)
    engine.dispose()
    with MoodleClient.connect(moodle, token, concurrency=4, timeout=120) as client:
        found = {u["idnumber"]: u for u in client.get_users_by_field("idnumber", list(people))}
        wrong = [k for k, (login, last) in people.items()
                 if k not in found or (found[k]["username"], found[k]["lastname"]) != (login, last)]
        assert not wrong, f"{len(wrong)} people differ in Moodle, e.g. {wrong[:3]}"
        by_id = {int(u["id"]): k for k, u in found.items()}
        for course, members in wanted.items():
            active = client.get_enrolled_users(int(courses[course]), onlyactive=True, userfields="id")
            held = {by_id.get(int(u["id"])) for u in active}
            assert members == held, (f"{course}: {len(members - held)} enrolments missing in Moodle, "
                                     f"{len(held - members)} active that the buffer no longer asks for")
    print(f"  checked: Moodle holds all {len(people):,} people and the enrolments of all {len(wanted)} courses")


def ratio_line(work: str, theirs: float | None, ours: float, goal: str, met: bool | None) -> None:
    them = f"{theirs:8.1f} s" if theirs is not None else " " * 10
    ratio = f"{ours / theirs:6.3f}" if theirs else " " * 6
    verdict = "" if met is None else ("met" if met else "NOT MET")
    print(f"  {work:<34} {them}  {ours:8.2f} s  {ratio}   {goal:<16} {verdict}")


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=3000)
    parser.add_argument("--courses", type=int, default=60)
    parser.add_argument("--per-person", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    moodle, token = os.environ.get("BUFSYNC_TEST_MOODLE_URL"), os.environ.get("BUFSYNC_TEST_MOODLE_TOKEN")
    if not moodle or not token:
        sys.exit("no real Moodle: run ../shared/moodle-real/up --reset and export its test.env")
    if args.people < 8 * (RENAMED + ENROLLED) + args.rounds * REMOVED or args.rounds > 8:
        sys.exit("--people too small for the change rounds (or --rounds above 8)")
    tag = f"b{int(time.time()) % 100000}"
    ours_url, theirs_url = fresh_database(), fresh_database()
    incumbents: Incumbents | None = None
    try:
        fill(ours_url, args.people, args.per_person, args.courses, prefix=f"{tag}s")
        fill(theirs_url, args.people, args.per_person, args.courses, prefix=f"{tag}i")
        incumbents = Incumbents(sa.engine.make_url(theirs_url).database or "")
        with tempfile.TemporaryDirectory() as work:
            ours = Bufsync(ours_url, moodle, token, Path(work))
            enrolments = args.people * args.per_person
            print(f"real Moodle {moodle}: {args.people:,} people, {args.courses} courses, {enrolments:,} enrolments; "
                  f"{args.rounds} rounds")
            first_theirs = incumbents.run()
            first_ours = ours.run("first load")
            idle_theirs, idle_ours, change_theirs, change_ours = [], [], [], []
            for r in range(args.rounds):
                idle_theirs.append(incumbents.run())
                idle_ours.append(ours.run("nothing to do"))
                change(ours_url, f"{tag}s", r, args.people, args.courses, args.per_person)
                change(theirs_url, f"{tag}i", r, args.people, args.courses, args.per_person)
                if r % 2:  # alternate who goes first: neither always meets a cold or a warm site
                    change_ours.append(ours.run("change"))
                    change_theirs.append(incumbents.run())
                else:
                    change_theirs.append(incumbents.run())
                    change_ours.append(ours.run("change"))
            full = ours.run("--full", "--full")
            version = ours.version()
            print(f"\n  {'work':<34} {'incumbents':>10}  {'bufsync':>10}  {'ratio':>6}   {'goal':<16}")
            ratio_line("first load", first_theirs, first_ours, "<= 0.65x", first_ours <= 0.65 * first_theirs)
            ratio_line("nothing to do (min)", min(idle_theirs), min(idle_ours), "<= 1.0 s wall",
                       min(idle_ours) <= 1.0)
            ratio_line("nothing to do (median)", statistics.median(idle_theirs), statistics.median(idle_ours), "", None)
            ratio_line("60 people + 600 enrolments (min)", min(change_theirs), min(change_ours), "<= 0.10x",
                       min(change_ours) <= 0.10 * min(change_theirs))
            ratio_line("60 people + 600 enrolments (median)", statistics.median(change_theirs),
                       statistics.median(change_ours), "", None)
            ratio_line("--full after the changes", first_ours, full, "vs first load", None)
            ratio_line("bufsync --version", None, version, "<= 0.3 s", version <= 0.3)
            print(f"\n  incumbents: nothing to do {spread(idle_theirs)}, changes {spread(change_theirs)}")
            print(f"  bufsync:    nothing to do {spread(idle_ours)}, changes {spread(change_ours)}")
            print("\n  bufsync runs: seconds, Moodle calls, peak memory")
            for run in ours.runs:
                print(f"    {run['title']:<14} {run['seconds']:7.2f} s {run['calls']:6,} calls "
                      f"{run['peak_mb']:6.0f} MB" + (f"  repaired {run['repaired']}" if run["repaired"] else ""))
            check_world(ours_url, moodle, token)
    finally:
        if incumbents is not None:
            incumbents.off()
        drop_database(ours_url)
        drop_database(theirs_url)


if __name__ == "__main__":
    main()
