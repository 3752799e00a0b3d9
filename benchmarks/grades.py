"""Benchmark: grades back to 1C, on PostgreSQL against the sandbox Moodle (in its own process).

    python benchmarks/grades.py [--courses 500] [--students 40] [--items 5] [--completion report|per_user|off]
                                [--completed 50]

Prints:
- the first export of every course's gradebook (the course total and each item with an idnumber):
  seconds, rows/s, Moodle calls (one a course), peak RSS;
- a run with nothing changed: seconds, Moodle calls (= courses), buffer rows written (must be 0), and in the
  same run the baseline a hand-written exporter pays: every row rewritten (one upsert per row's key, all rows,
  in batches), as a ratio;
- 1% of the grades changed in Moodle: seconds, rows written (each changed grade and its student's total);
- completed_at, the route --completion names (every course tracks self completion, --completed % of each
  course's students completed it): per_user costs a call per student, report one call per 10,000;
- what buf_grades holds, read back against Moodle's own report for a sample of courses.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import sqlalchemy as sa

import reconcile as _reconcile

TOKEN, drop_database, fresh_database, sandbox = (_reconcile.TOKEN, _reconcile.drop_database,
                                                 _reconcile.fresh_database, _reconcile.sandbox)


def admin(client: httpx.Client, moodle: str, action: str, **args: Any) -> Any:
    answer = client.post(f"{moodle}/sandbox/admin", json={"action": action, "args": args},
                         headers={"X-Sandbox-Token": TOKEN}, timeout=600)
    answer.raise_for_status()
    return answer.json()["result"]


def stamps(url: str) -> dict[tuple[str, str, str], datetime]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT user_external_id, course_external_id, item, updated_at FROM buf_grades"))
        out = {(r[0], r[1], r[2]): r[3] for r in rows}
    engine.dispose()
    return out


def rewrite_all(url: str) -> float:
    """The baseline: what an exporter without a ledger does each run: every row written again."""
    from bufsync.dialects import dialect_named
    from bufsync.mapping import load_mappings
    from bufsync.paths import shipped_mappings_dir
    from bufsync.schema import build_metadata
    table = build_metadata(load_mappings(shipped_mappings_dir())).tables["buf_grades"]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(table))]
    started = time.perf_counter()
    now = datetime.now().replace(microsecond=0)
    dialect = dialect_named("postgresql")
    for start in range(0, len(rows), 1000):
        with engine.begin() as conn:
            for statement in dialect.upserts(table, [r | {"updated_at": now} for r in rows[start:start + 1000]],
                                             ["user_external_id", "course_external_id", "item"]):
                conn.execute(statement)
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds


def completers(client: httpx.Client, moodle: str, courseid: int, n: int) -> int:
    """The first n active students of the course complete it (self completion, then Moodle's aggregation)."""
    students = [u for u in client.post(f"{moodle}/webservice/rest/server.php", data={
        "wstoken": TOKEN, "wsfunction": "core_enrol_get_enrolled_users", "moodlewsrestformat": "json",
        "courseid": courseid, "options[0][name]": "onlyactive", "options[0][value]": 1,
        "options[1][name]": "userfields", "options[1][value]": "id"}).json()][:n]
    for student in students:
        admin(client, moodle, "mark_completion", courseid=courseid, userid=int(student["id"]), criteria=["self"],
              timecompleted=1757116800, aggregate=True)
    return len(students)


def with_completion(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        n = int(conn.execute(sa.text("SELECT count(*) FROM buf_grades WHERE item = 'course' AND completed_at IS NOT "
                                     "NULL")).scalar_one())
    engine.dispose()
    return n


def moodle_reads(moodle: str, courseids: list[int]) -> float:
    """The sandbox answering every course's report, 4 in flight as bufsync asks: the part of a run that is
    Moodle's, not bufsync's."""
    from bufsync.adapters.moodle.client import MoodleClient
    with MoodleClient.connect(moodle, TOKEN, timeout=120, concurrency=4) as client:
        started = time.perf_counter()
        client.parallel(courseids, client.grade_items)
        return time.perf_counter() - started


def check(url: str, moodle: str, sample: list[int]) -> None:
    """buf_grades against Moodle's own report for a sample of courses: every grade, read back."""
    from bufsync.adapters.moodle.client import MoodleClient
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        held = {(r[0], r[1], r[2]): r[3] for r in conn.execute(sa.text(
            "SELECT user_external_id, course_external_id, item, grade FROM buf_grades WHERE removed_at IS NULL"))}
    engine.dispose()
    with MoodleClient.connect(moodle, TOKEN, timeout=120) as client:
        for courseid in sample:
            for user in client.grade_items(courseid):
                for item in user["gradeitems"]:
                    name = "course" if item["itemtype"] == "course" else item.get("idnumber")
                    if not name:
                        continue
                    raw = item["graderaw"]
                    want = None if raw is None else Decimal(str(raw)).quantize(Decimal("1e-5"))
                    got = held.get((user["useridnumber"], user["courseidnumber"], name))
                    assert got == want, (user["useridnumber"], user["courseidnumber"], name, got, want)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--courses", type=int, default=500)
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--items", type=int, default=5)
    parser.add_argument("--completion", choices=["report", "per_user", "off"], default="report")
    parser.add_argument("--completed", type=int, default=50, help="percent of each course's students completed")
    args = parser.parse_args()
    from bufsync import commands
    from bufsync.adapters.moodle.completion import REPORT_DEFINITION
    from bufsync.config import load_settings
    proc, moodle = sandbox()
    url = fresh_database()
    try:
        # every student in `students` courses' worth of seats: courses x students enrolments in all
        people = args.courses * args.students // 4
        _reconcile.fill(url, people, 4, args.courses)
        env = {"BUFSYNC_BUFFER_URL": url, "BUFSYNC_MOODLE_URL": moodle, "BUFSYNC_MOODLE_TOKEN": TOKEN,
               "BUFSYNC_MOODLE_GRADES_COMPLETION": "off" if args.completion == "report" else args.completion}
        loaded = load_settings(None, env)
        assert commands.run(loaded, ["users", "courses", "subscriptions"]).outcome == "ok"
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            courseids = [int(r[0]) for r in conn.execute(sa.text("SELECT lms_id FROM buf_courses ORDER BY lms_id"))]
        engine.dispose()
        t0 = time.perf_counter()
        with httpx.Client() as client:
            completed = 0
            for courseid in courseids:
                filled = admin(client, moodle, "fill_gradebook", courseid=courseid, items=args.items)
                admin(client, moodle, "set_completion_criteria", courseid=courseid, criteria=[{"type": "self"}],
                      enable=True)
                done = completers(client, moodle, courseid, filled["students"] * args.completed // 100)
                completed += done
            if args.completion == "report":
                env["BUFSYNC_MOODLE_GRADES_COMPLETION"] = "report"  # the report exists now
                env["BUFSYNC_MOODLE_GRADES_COMPLETION_REPORT"] = str(admin(client, moodle, "create_report",
                                                                           **REPORT_DEFINITION)["id"])
                loaded = load_settings(None, env)
        print(f"{args.courses} courses x ~{args.students} students x {args.items} items, PostgreSQL + sandbox Moodle "
              f"(gradebooks filled in {time.perf_counter() - t0:.0f} s):")

        t0 = time.perf_counter()
        first = commands.run(loaded, ["grades"])
        initial = time.perf_counter() - t0
        assert first.outcome == "ok", first.render()
        rows = len(stamps(url))
        check(url, moodle, courseids[:: max(1, len(courseids) // 20)])
        print(f"  first export   {initial:.1f} s, {rows:,} rows, {rows / initial:,.0f} rows/s, "
              f"{first.moodle_calls} Moodle calls (read back against Moodle's report: match)")

        before = stamps(url)
        t0 = time.perf_counter()
        second = commands.run(loaded, ["grades"])
        nochange = time.perf_counter() - t0
        written = sum(1 for key, at in stamps(url).items() if before.get(key) != at)
        assert second.outcome == "ok" and written == 0, (second.outcome, written)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the baseline loads every row
        reads = moodle_reads(moodle, courseids)
        baseline = rewrite_all(url)
        print(f"  no change      {nochange:.1f} s, {second.moodle_calls} Moodle calls, {written} rows written; "
              f"rewriting every row (the baseline) {baseline:.1f} s of database writes alone -> bufsync's whole run "
              f"is {nochange / baseline:.2f}x of it; of bufsync's run, the sandbox answering the {len(courseids)} "
              f"reports alone takes {reads:.1f} s")

        # 1% of the grades change in Moodle (each also changes its student's course total)
        changes = rows * args.items // (args.items + 1) // 100
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            picked = conn.execute(sa.text(
                "SELECT g.course_external_id, g.item, u.lms_id, c.lms_id FROM buf_grades g "
                "JOIN buf_users u ON u.external_id = g.user_external_id "
                "JOIN buf_courses c ON c.external_id = g.course_external_id "
                "WHERE g.item <> 'course' ORDER BY md5(g.user_external_id || g.item) LIMIT :n"), {"n": changes}).all()
            conn.execute(sa.text("UPDATE buf_grades SET updated_at = '2000-01-01'"))
            conn.commit()
        engine.dispose()
        with httpx.Client() as client:
            for _course, item, userid, courseid in picked:
                admin(client, moodle, "set_grade", courseid=int(courseid), idnumber=item, userid=int(userid), grade=100)
        t0 = time.perf_counter()
        third = commands.run(loaded, ["grades"])
        changed_run = time.perf_counter() - t0
        assert third.outcome == "ok", third.render()
        written = sum(1 for at in stamps(url).values() if at != datetime(2000, 1, 1))
        counts = {k: v for k, v in third.mappings[0].counts.items() if v and k != "unchanged"}
        check(url, moodle, sorted({int(c) for *_, c in picked})[:20])
        print(f"  {changes:,} grades changed (1%)  {changed_run:.1f} s, {third.moodle_calls} Moodle calls, {written:,} "
              f"rows written {counts} (read back: match)")
        print(f"  completed_at   route {args.completion}: {completed:,} students completed their course; rows with "
              f"completed_at {with_completion(url):,}")
        print(f"  peak RSS       {peak:.0f} MB (the runs, before the baseline loads every row)")
    finally:
        drop_database(url)
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
