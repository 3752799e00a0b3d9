"""Benchmark: the main job on PostgreSQL against the sandbox Moodle (in its own process).

    python benchmarks/reconcile.py --users 100000 --subs-per-user 3 [--baseline-users 2000]

Prints, for one scale per child process (so peak RSS is that run's own):
- initial load: records/s, Moodle calls (reads/writes), client CPU seconds, peak RSS;
- a run after 1C renamed 100 people: seconds and calls (pass two reads those rows only);
- a run with nothing to do: seconds, write calls (must be 0), and the ratio to a bare streamed
  SELECT of the same rows measured in the same run (goal <= 3x);
- the auth_db + enrol_database way, measured in the same run on a sample: one create call per
  user, one enrol call per enrolment after a per-course re-read of the enrolled users; the
  ratio of its records/s to bufsync's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid

import sqlalchemy as sa

from bufsync.sandbox.moodle.run import spawn

ADMIN = os.environ.get("BUFSYNC_BENCH_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
TOKEN = "be11c4ma4kbe11c4ma4kbe11c4ma4k00"


def sandbox() -> tuple[subprocess.Popen, str]:
    return spawn(TOKEN)


def fresh_database() -> str:
    name = f"bufsync_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.engine.make_url(ADMIN).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def fill(url: str, users: int, per_user: int, courses: int, prefix: str = "") -> None:
    """A 1C-like buffer; `prefix` keeps people and courses of several buffers apart on one Moodle."""
    from bufsync import migrations
    from bufsync.config import load_settings
    from bufsync.mapping import load_mappings
    from bufsync.schema import build_metadata
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": url})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    tables = build_metadata(mappings).tables
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(tables["buf_courses"].insert(), [
            {"external_id": f"{prefix}C{c:05d}", "shortname": f"{prefix}course-{c:05d}",
             "fullname": f"Дисциплина {prefix}{c}"} for c in range(courses)])
        for start in range(0, users, 10000):
            conn.execute(tables["buf_users"].insert(), [
                {"external_id": f"{prefix}U{i:07d}", "username": f"{prefix}student{i:07d}",
                 "email": f"{prefix}student{i:07d}@bench.example", "last_name": f"Фамилия{i}", "first_name": "Имя",
                 "middle_name": "Отчество", "status": "active"}
                for i in range(start, min(users, start + 10000))])
            conn.execute(tables["buf_subscriptions"].insert(), [
                {"user_external_id": f"{prefix}U{i:07d}",
                 "course_external_id": f"{prefix}C{(i * 7 + k * 131) % courses:05d}", "role": "student",
                 "status": "active"}
                for i in range(start, min(users, start + 10000)) for k in range(per_user)])
    engine.dispose()


def bare_select(url: str, tables: tuple[str, ...] = ("buf_users", "buf_subscriptions")) -> float:
    """The baseline of a run with nothing to do: every row of these tables streamed once, in key order."""
    engine = sa.create_engine(url)
    started = time.perf_counter()
    with engine.connect() as conn:
        for table in tables:
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(
                sa.text(f"SELECT * FROM {table} ORDER BY 1"))
            for _ in result:
                pass
    engine.dispose()
    return time.perf_counter() - started


def one_scale(users: int, per_user: int, courses: int) -> dict:
    from bufsync import commands
    from bufsync.config import load_settings
    proc, moodle = sandbox()
    url = fresh_database()
    try:
        fill(url, users, per_user, courses)
        loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": url, "BUFSYNC_MOODLE_URL": moodle,
                                      "BUFSYNC_MOODLE_TOKEN": TOKEN})
        cpu0, t0 = time.process_time(), time.perf_counter()
        first = commands.run(loaded, ["users", "courses", "subscriptions"])
        initial = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        import httpx
        stats0 = httpx.get(f"{moodle}/sandbox/stats").json()["calls"]
        t0 = time.perf_counter()
        second = commands.run(loaded, ["users", "courses", "subscriptions"])
        nochange = time.perf_counter() - t0
        stats1 = httpx.get(f"{moodle}/sandbox/stats").json()["calls"]
        writes = sum(v - stats0.get(k, 0) for k, v in stats1.items()
                     if any(w in k for w in ("create", "update", "enrol_users", "delete")))
        # a figure counts only if the runs did the job: everything applied, then nothing left to write
        assert first.outcome == "ok" and second.outcome == "ok", (first.outcome, second.outcome)
        assert writes == 0, f"{writes} write calls in a run with nothing to do"
        # 100 people renamed by 1C: pass two reads those rows only, not the table
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE buf_users SET last_name = last_name || '-new' WHERE external_id IN "
                                 "(SELECT external_id FROM buf_users ORDER BY external_id LIMIT 100)"))
        engine.dispose()
        t0 = time.perf_counter()
        third = commands.run(loaded, ["users", "courses", "subscriptions"])
        few = time.perf_counter() - t0
        updated = next(m.counts["updated"] for m in third.mappings if m.mapping == "users")
        assert third.outcome == "ok" and updated == 100, (third.outcome, updated)
        select = bare_select(url)
        records = users + users * per_user + courses
        return {"users": users, "subscriptions": users * per_user, "initial_seconds": initial,
                "records_per_second": records / initial, "initial_calls": first.moodle_calls, "client_cpu": cpu,
                "nochange_seconds": nochange, "nochange_calls": second.moodle_calls, "nochange_writes": writes,
                "hundred_changed_seconds": few, "hundred_changed_calls": third.moodle_calls,
                "bare_select_seconds": select, "ratio_to_select": nochange / select,
                "outcome": [first.outcome, second.outcome],
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    finally:
        drop_database(url)
        proc.terminate()
        proc.wait(10)


def baseline(users: int, per_user: int, courses: int) -> dict:
    """What auth_db + enrol_database do: a call per user, a per-course re-read, a call per enrolment."""
    from bufsync.adapters.moodle.transport import Transport
    proc, moodle = sandbox()
    try:
        t = Transport(moodle, TOKEN, timeout=60)
        t0 = time.perf_counter()
        ids = []
        for i in range(users):
            r = t.call("core_user_create_users", {"users": [{
                "username": f"base{i:07d}", "email": f"base{i:07d}@bench.example", "firstname": "Имя",
                "lastname": f"Фамилия{i}", "idnumber": f"B{i:07d}", "createpassword": 1}]}, write=True)
            ids.append(r[0]["id"])
        course_ids = [c["id"] for c in t.call("core_course_create_courses", {"courses": [
            {"fullname": f"Base {c}", "shortname": f"base-{c}", "categoryid": 1} for c in range(courses)]},
            write=True)]
        by_course: dict[int, list[int]] = {}
        for i, uid in enumerate(ids):
            for k in range(per_user):
                by_course.setdefault(course_ids[(i * 7 + k * 131) % courses], []).append(uid)
        for courseid, members in by_course.items():
            t.call("core_enrol_get_enrolled_users", {"courseid": courseid})  # the per-course re-read
            for uid in members:
                t.call("enrol_manual_enrol_users", {"enrolments": [
                    {"roleid": 5, "userid": uid, "courseid": courseid}]}, write=True)
        seconds = time.perf_counter() - t0
        records = users + users * per_user + courses
        return {"users": users, "seconds": seconds, "records_per_second": records / seconds, "calls": t.stats.calls}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100000)
    parser.add_argument("--subs-per-user", type=int, default=3)
    parser.add_argument("--courses", type=int, default=500)
    parser.add_argument("--small", type=int, default=10000, help="the smaller scale, for RSS flatness")
    parser.add_argument("--baseline-users", type=int, default=2000)
    parser.add_argument("--child", choices=["scale", "baseline"])
    parser.add_argument("--n", type=int)
    args = parser.parse_args()
    if args.child == "scale":
        print(json.dumps(one_scale(args.n, args.subs_per_user, args.courses)))
        return
    if args.child == "baseline":
        print(json.dumps(baseline(args.n, args.subs_per_user, min(args.courses, 50))))
        return

    def child(kind: str, n: int) -> dict:
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--n", str(n), "--subs-per-user",
                              str(args.subs_per_user), "--courses", str(args.courses)],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    results = [child("scale", n) for n in (args.small, args.users)]
    base = child("baseline", args.baseline_users)
    for r in results:
        print(f"{r['users']:,} users + {r['subscriptions']:,} subscriptions on PostgreSQL:")
        print(f"  initial load   {r['initial_seconds']:.1f} s, {r['records_per_second']:,.0f} records/s, "
              f"{r['initial_calls']} Moodle calls, client CPU {r['client_cpu']:.1f} s, outcome {r['outcome'][0]}")
        print(f"  100 renamed    {r['hundred_changed_seconds']:.2f} s, {r['hundred_changed_calls']} calls")
        print(f"  no-change run  {r['nochange_seconds']:.2f} s, {r['nochange_calls']} calls, "
              f"{r['nochange_writes']} write calls; bare streamed SELECT {r['bare_select_seconds']:.2f} s "
              f"-> ratio {r['ratio_to_select']:.2f}x (goal <= 3x)")
        print(f"  peak RSS       {r['peak_rss_mb']:.0f} MB")
    big = results[-1]
    print(f"auth_db + enrol_database way on {base['users']:,} users: {base['records_per_second']:,.0f} records/s "
          f"in {base['calls']:,} calls; "
          f"bufsync is {big['records_per_second'] / base['records_per_second']:.1f}x faster "
          f"per record ({big['initial_calls']:,} calls for {big['users']:,} users)")


if __name__ == "__main__":
    main()
