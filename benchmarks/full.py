"""Benchmark: `bufsync run --full` against the first load, on PostgreSQL and the sandbox Moodle (its own process).

    python benchmarks/full.py [--users 5000 --subs-per-user 3 --courses 50]

Loads a 1C-like buffer (departments, courses with and without dates, people, enrolments with a few teachers and
suspended rows), then measures in the same run:
- the first load: seconds and Moodle calls per function (the baseline);
- `--full` right after it: seconds, Moodle calls per function, write calls (must be 0), repaired (must be 0),
  and the ratio --full / first load (issue 12's goal: <= 1.5x at 20,000 users / 60,000 enrolments / 200 courses,
  with enrolment reads that grow with courses, not courses x chunks);
- a second `--full`: the same again (nothing drifted, nothing written).
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from typing import Any

import httpx
import sqlalchemy as sa

WRITES = ("create", "update", "enrol_users", "unenrol", "unassign", "delete")
MAPPINGS = ["departments", "users", "courses", "subscriptions"]




import reconcile as _shared

ADMIN, TOKEN = _shared.ADMIN, _shared.TOKEN
sandbox, fresh_database, drop_database = _shared.sandbox, _shared.fresh_database, _shared.drop_database


def fill(url: str, users: int, per_user: int, courses: int) -> int:
    from bufsync import migrations
    from bufsync.config import load_settings
    from bufsync.mapping import load_mappings
    from bufsync.schema import build_metadata
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": url})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    tables = build_metadata(mappings).tables
    engine = sa.create_engine(url)
    departments = max(3, courses // 10)
    subs = 0
    with engine.begin() as conn:
        conn.execute(tables["buf_departments"].insert(), [
            {"external_id": f"D{d:03d}", "parent_external_id": None if d == 0 else f"D{(d - 1) // 3:03d}",
             "name": f"Подразделение {d}", "status": "active"} for d in range(departments)])
        conn.execute(tables["buf_courses"].insert(), [
            {"external_id": f"C{c:05d}", "shortname": f"course-{c:05d}", "fullname": f"Дисциплина {c}",
             "category_external_id": None if c % 5 == 4 else f"D{c % departments:03d}",
             "start_date": date(2026, 9, 1) if c % 2 else None, "end_date": date(2027, 6, 30) if c % 4 == 1 else None}
            for c in range(courses)])
        for start in range(0, users, 10000):
            block = range(start, min(users, start + 10000))
            conn.execute(tables["buf_users"].insert(), [
                {"external_id": f"U{i:07d}", "username": f"student{i:07d}", "email": f"student{i:07d}@bench.example",
                 "last_name": f"Фамилия{i}", "first_name": "Имя", "middle_name": "Отчество",
                 "phone": f"+7 900 {i:07d}" if i % 2 else None, "status": "suspended" if i % 97 == 5 else "active"}
                for i in block])
            rows = [{"user_external_id": f"U{i:07d}", "course_external_id": f"C{(i * 7 + k * 131) % courses:05d}",
                     "role": "editingteacher" if i % 50 == 0 and k == 0 else "student",
                     "status": "suspended" if (i + k) % 41 == 3 else "active"}
                    for i in block for k in range(per_user)]
            rows = list({(r["user_external_id"], r["course_external_id"], r["role"]): r for r in rows}.values())
            subs += len(rows)
            conn.execute(tables["buf_subscriptions"].insert(), rows)
    engine.dispose()
    return subs


def calls(moodle: str) -> dict[str, int]:
    return httpx.get(f"{moodle}/sandbox/stats").json()["calls"]


def measured(loaded: Any, moodle: str, **options: Any) -> dict[str, Any]:
    from bufsync import commands
    before = calls(moodle)
    started = time.perf_counter()
    report = commands.run(loaded, MAPPINGS, **options)
    seconds = time.perf_counter() - started
    after = calls(moodle)
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    assert report.outcome == "ok", report.render()
    return {"seconds": seconds, "calls": delta, "total": sum(delta.values()),
            "writes": sum(v for k, v in delta.items() if any(w in k for w in WRITES)),
            "repaired": sum(m.counts.get("repaired", 0) for m in report.mappings),
            "rejected": sum(m.counts.get("rejected", 0) for m in report.mappings)}


def show(title: str, r: dict[str, Any]) -> None:
    print(f"  {title:<14} {r['seconds']:7.1f} s, {r['total']:,} Moodle calls, {r['writes']} write calls, "
          f"repaired {r['repaired']}, rejected {r['rejected']}")
    for name, n in sorted(r["calls"].items()):
        print(f"      {name:<40} {n:>6}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--subs-per-user", type=int, default=3)
    parser.add_argument("--courses", type=int, default=50)
    args = parser.parse_args()
    from bufsync.config import load_settings
    proc, moodle = sandbox()
    url = fresh_database()
    try:
        subs = fill(url, args.users, args.subs_per_user, args.courses)
        loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": url, "BUFSYNC_MOODLE_URL": moodle,
                                      "BUFSYNC_MOODLE_TOKEN": TOKEN})
        first = measured(loaded, moodle)
        full = measured(loaded, moodle, full=True)
        again = measured(loaded, moodle, full=True)
    finally:
        drop_database(url)
        proc.terminate()
        proc.wait(10)
    print(f"{args.users:,} users, {subs:,} enrolment rows, {args.courses} courses on PostgreSQL + the sandbox Moodle:")
    show("first load", first)
    show("--full", full)
    show("second --full", again)
    reads = full["calls"].get("core_enrol_get_enrolled_users", 0)
    print(f"  core_enrol_get_enrolled_users in --full: {reads} for {args.courses} courses "
          f"({reads / args.courses:.1f} per course; goal: grows with courses, not courses x chunks)")
    print(f"  ratio --full / first load: {full['seconds'] / first['seconds']:.2f}x (goal <= 1.5x at 20k/60k/200)")
    assert full["writes"] == 0 and again["writes"] == 0 and full["repaired"] == 0 and again["repaired"] == 0


if __name__ == "__main__":
    main()
