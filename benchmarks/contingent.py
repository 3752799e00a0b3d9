"""Benchmark: the contingent as cohorts, on PostgreSQL against the sandbox Moodle (in its own process).

    python benchmarks/contingent.py [--students 20000] [--groups 600] [--staff 2000] [--departments 40]
                                    [--processes 2000] [--courses 200] [--moves 500]

Prints:
- first load of the contingent and the learning processes (people and courses are created first: the
  cohorts and enrolments need them): students + staff as cohorts, processes as course groups, and the
  enrolments the processes ask for (each studying student of the group, the teacher) with their group
  memberships: seconds, rows/s, Moodle calls, peak RSS;
- a run with nothing to do: seconds, calls, write calls (must be 0), and the ratio to a bare streamed
  SELECT of the same rows (contingent, processes, derived enrolments) measured in the same run (goal <= 3x);
- 500 students moved between groups: seconds and calls (calls grow with the changes, not the table);
- what Moodle holds, read back through Web Services after each: members per cohort, active enrolments
  per course and members per course group must match the buffer.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from datetime import date

import httpx
import sqlalchemy as sa

import reconcile as _reconcile  # the sandbox and throwaway databases of benchmarks/reconcile.py

TOKEN, drop_database, fresh_database, sandbox = (_reconcile.TOKEN, _reconcile.drop_database,
                                                 _reconcile.fresh_database, _reconcile.sandbox)

WRITES = ("create", "update", "enrol_users", "delete", "add_cohort_members", "delete_cohort_members",
          "add_group_members", "delete_group_members", "assign", "unassign")


def fill(url: str, students: int, groups: int, staff: int, departments: int, processes: int, courses: int) -> None:
    from bufsync import migrations
    from bufsync.config import load_settings
    from bufsync.mapping import load_mappings
    from bufsync.schema import build_metadata
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": url})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    tables = build_metadata(mappings).tables
    statuses = ["studying"] * 17 + ["academic_leave", "expelled", "graduated"]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(tables["buf_departments"].insert(), [
            {"external_id": f"D{d:03d}", "parent_external_id": None, "name": f"Кафедра {d}", "status": "active"}
            for d in range(departments)])
        people = students + staff
        for start in range(0, people, 10000):
            conn.execute(tables["buf_users"].insert(), [
                {"external_id": f"U{i:07d}", "username": f"person{i:07d}", "email": f"person{i:07d}@bench.example",
                 "last_name": f"Фамилия{i}", "first_name": "Имя", "status": "active"}
                for i in range(start, min(people, start + 10000))])
        for start in range(0, students, 10000):
            conn.execute(tables["buf_students"].insert(), [
                {"person_external_id": f"U{i:07d}", "record_book": f"ЗК{i:07d}", "group_code": f"ГР-{i % groups:04d}",
                 "group_name": f"Группа {i % groups}", "department_external_id": f"D{i % departments:03d}",
                 "status": statuses[(i // groups) % len(statuses)]}
                for i in range(start, min(students, start + 10000))])
        conn.execute(tables["buf_staff"].insert(), [
            {"person_external_id": f"U{students + i:07d}", "position": "преподаватель",
             "department_external_id": f"D{i % departments:03d}", "status": "working"} for i in range(staff)])
        conn.execute(tables["buf_courses"].insert(), [
            {"external_id": f"C{c:04d}", "shortname": f"disc-{c:04d}", "fullname": f"Дисциплина {c}"}
            for c in range(courses)])
        # a group studies a few disciplines, each in another course (a group's name is unique in a course)
        conn.execute(tables["buf_learning_processes"].insert(), [
            {"external_id": f"LP{i:06d}", "group_code": f"ГР-{i % groups:04d}",
             "course_external_id": f"C{((i % groups) * 3 + i // groups) % courses:04d}",
             "teacher_external_id": f"U{students + i % staff:07d}", "semester": 1,
             "start_date": date(2026, 9, 1), "end_date": date(2027, 1, 31)} for i in range(processes)])
    engine.dispose()


def writes(moodle: str, before: dict[str, int]) -> int:
    after = httpx.get(f"{moodle}/sandbox/stats").json()["calls"]
    return sum(v - before.get(k, 0) for k, v in after.items() if any(w in k for w in WRITES))


def held(moodle: str) -> dict[str, int]:
    """Members per cohort idnumber, read back through Web Services."""
    from bufsync.adapters.moodle.client import MoodleClient
    with MoodleClient.connect(moodle, TOKEN, timeout=120) as client:
        found = client.call("core_cohort_get_cohorts", {})
        ids = [int(c["id"]) for c in found]
        members = {int(m["cohortid"]): len(m["userids"])
                   for m in client.call("core_cohort_get_cohort_members", {"cohortids": ids})}
    return {c["idnumber"]: members[int(c["id"])] for c in found}


def enrolled(moodle: str) -> tuple[dict[str, int], dict[str, int]]:
    """Active enrolments per course shortname and members per course group idnumber, read back through
    Web Services."""
    from bufsync.adapters.moodle.client import MoodleClient
    with MoodleClient.connect(moodle, TOKEN, timeout=120) as client:
        courses = [c for c in client.get_courses_by_field() if str(c["shortname"]).startswith("disc-")]
        active = dict(zip([c["shortname"] for c in courses], client.parallel(
            [int(c["id"]) for c in courses],
            lambda cid: len(client.get_enrolled_users(cid, onlyactive=True, userfields="id"))), strict=True))
        groups = [g for c in courses for g in client.call("core_group_get_course_groups", {"courseid": int(c["id"])})]
        members: dict[str, int] = {}
        for start in range(0, len(groups), 200):
            batch = groups[start:start + 200]
            read = client.get_group_members([int(g["id"]) for g in batch])
            sizes = {int(g["groupid"]): len(g["userids"]) for g in read}
            members.update({g["idnumber"]: sizes[int(g["id"])] for g in batch})
    return active, members


def wanted_enrolments(url: str) -> tuple[dict[str, int], dict[str, int]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        active = conn.execute(sa.text(
            "SELECT 'disc-' || substr(course_external_id, 2), count(DISTINCT user_external_id) "
            "FROM buf_process_enrolments GROUP BY course_external_id")).all()
        members = conn.execute(sa.text("SELECT process_external_id, count(*) FROM buf_process_enrolments "
                                       "GROUP BY process_external_id")).all()
    engine.dispose()
    return dict(active), dict(members)


def wanted(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        groups = conn.execute(sa.text("SELECT '1c-' || group_code, count(*) FROM buf_students "
                                      "WHERE status = 'studying' GROUP BY group_code")).all()
        staff = conn.execute(sa.text("SELECT '1c-' || department_external_id, count(DISTINCT person_external_id) "
                                     "FROM buf_staff WHERE status = 'working' GROUP BY department_external_id")).all()
    engine.dispose()
    return dict(groups) | dict(staff)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=20000)
    parser.add_argument("--groups", type=int, default=600)
    parser.add_argument("--staff", type=int, default=2000)
    parser.add_argument("--departments", type=int, default=40)
    parser.add_argument("--moves", type=int, default=500)
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--courses", type=int, default=200)
    args = parser.parse_args()
    from bufsync import commands
    from bufsync.config import load_settings
    proc, moodle = sandbox()
    url = fresh_database()
    names = ["students", "staff", "learning_processes", "process_enrolments"]
    try:
        fill(url, args.students, args.groups, args.staff, args.departments, args.processes, args.courses)
        loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": url, "BUFSYNC_MOODLE_URL": moodle,
                                      "BUFSYNC_MOODLE_TOKEN": TOKEN})
        # people and courses first: the contingent's and the processes' own figures follow
        commands.run(loaded, ["departments", "users", "courses"])
        t0 = time.perf_counter()
        first = commands.run(loaded, names)
        initial = time.perf_counter() - t0
        assert first.outcome == "ok", first.render()
        derived = sa.create_engine(url)
        with derived.connect() as conn:
            enrolments = conn.execute(sa.text("SELECT count(*) FROM buf_process_enrolments")).scalar_one()
        derived.dispose()
        rows = args.students + args.staff + args.processes + enrolments
        cohorts = held(moodle)
        assert cohorts == wanted(url), "Moodle's cohorts do not match the buffer"
        assert enrolled(moodle) == wanted_enrolments(url), "Moodle's enrolments or course groups do not match"
        print(f"{args.students:,} students in {args.groups} groups + {args.staff:,} staff in {args.departments} "
              f"departments + {args.processes:,} learning processes in {args.courses} courses "
              f"({enrolments:,} enrolments derived), PostgreSQL + sandbox Moodle:")
        print(f"  first load     {initial:.1f} s, {rows / initial:,.0f} rows/s, {first.moodle_calls} Moodle calls, "
              f"{len(cohorts)} cohorts, {sum(cohorts.values()):,} memberships, {args.processes:,} course groups, "
              f"{enrolments:,} enrolments + group memberships (read back: match the buffer)")
        # the no-change run and its baseline, three times each, interleaved: the medians (one-shot figures of a
        # sub-second run drift by half on this VM)
        before = httpx.get(f"{moodle}/sandbox/stats").json()["calls"]
        runs, selects = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            second = commands.run(loaded, names)
            runs.append(time.perf_counter() - t0)
            selects.append(_reconcile.bare_select(url, ("buf_students", "buf_staff", "buf_learning_processes",
                                                        "buf_process_enrolments")))
            assert second.outcome == "ok", second.render()
        written = writes(moodle, before)
        assert written == 0, written
        nochange, select = statistics.median(runs), statistics.median(selects)
        print(f"  no-change run  {nochange:.2f} s (median of 3), {second.moodle_calls} calls, {written} write calls; "
              f"bare streamed SELECT {select:.2f} s -> ratio {nochange / select:.2f}x (goal <= 3x)")
        print("                 " + ", ".join(f"{m.mapping} {m.seconds:.2f} s" for m in second.mappings))
        engine = sa.create_engine(url)
        with engine.begin() as conn:  # students move to the next group
            conn.execute(sa.text(
                "UPDATE buf_students SET group_code = 'ГР-' || lpad(((substr(group_code, 4)::int + 1) % :groups)::text,"
                " 4, '0') WHERE record_book IN (SELECT record_book FROM buf_students WHERE status = 'studying' "
                "ORDER BY record_book LIMIT :moves)"), {"groups": args.groups, "moves": args.moves})
        engine.dispose()
        t0 = time.perf_counter()
        third = commands.run(loaded, names)
        moved = time.perf_counter() - t0
        updated = next(m.counts["updated"] for m in third.mappings if m.mapping == "students")
        assert third.outcome == "ok" and updated == args.moves, (third.outcome, updated)
        assert held(moodle) == wanted(url), "Moodle's cohorts do not match the buffer after the moves"
        assert enrolled(moodle) == wanted_enrolments(url), "Moodle's enrolments do not match after the moves"
        changed = {k: v for k, v in next(m.counts for m in third.mappings if m.mapping == "process_enrolments").items()
                   if v and k != "unchanged"}
        print(f"  {args.moves} moves      {moved:.2f} s, {third.moodle_calls} Moodle calls; process enrolments "
              f"{changed} (read back: match)")
        print(f"  peak RSS       {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        drop_database(url)
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
