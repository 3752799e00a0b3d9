"""Benchmark: the СЦОС scenarios on PostgreSQL against `bufsync sandbox` (Moodle and СЦОС in their own process).

    python benchmarks/scos.py [--courses 50] [--students 100]

A buffer of courses x students (each student with an ЕСИА id, in one course; a teacher per course)
is synced into the sandbox Moodle; every course gets two graded items and every student two
grades. Then, as scheduled jobs would: scenarios, dispatch, until every passport, enrolment,
result and progress is on the portal. Prints seconds and Moodle/portal calls per step, items/s
delivered, peak RSS, and a run with nothing to do. Baseline in the same run: what a hand-written
script does on each run, sending every learner item again, one per HTTP call (as the public TS
client sends them).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bufsync import commands, migrations
from bufsync.config import load_settings
from bufsync.mapping import load_mappings
from bufsync.portals.runs import run_dispatch, run_portal
from bufsync.portals.scos.settings import ScosSettings
from bufsync.sandbox.moodle.run import parse_env_line
from bufsync.schema import build_metadata

from reconcile import drop_database, fresh_database  # benchmarks/reconcile.py

TOKEN = "b" * 32
PASSPORT = {"content": "Лекции и практика", "results": "Умеет", "competences": "ОПК-1", "requirements": ["Нет"],
            "direction": ["09.03.01"], "credits": 3, "duration_weeks": 16}


def sandbox(latency: float) -> tuple[subprocess.Popen[str], dict[str, str]]:
    exe = Path(sys.executable).with_name("bufsync")
    proc = subprocess.Popen([str(exe), "sandbox", "--port", "0", "--scos-port", "0", "--token", TOKEN,
                             "--scos-moderation", "1", "--scos-fault", f"latency:1:{latency}"],
                            stdout=subprocess.PIPE, text=True)
    env = dict(parse_env_line(proc.stdout.readline()) for _ in range(6))
    return proc, env


def admin(client: httpx.Client, url: str, action: str, **args: Any) -> Any:
    answer = client.post(f"{url}/sandbox/admin", json={"action": action, "args": args},
                         headers={"X-Sandbox-Token": TOKEN})
    answer.raise_for_status()
    return answer.json()["result"]


def fill(loaded: Any, courses: int, students: int) -> None:
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    tables = build_metadata(mappings).tables
    engine = sa.create_engine(loaded.buffer_url)
    users = [{"external_id": f"U{c:03d}-{s:04d}", "username": f"u{c:03d}s{s:04d}", "email": f"u{c}s{s}@bench.example",
              "last_name": "Студент", "first_name": "Пётр", "status": "active", "esia_id": f"esia-{c}-{s}"}
             for c in range(courses) for s in range(students)]
    users += [{"external_id": f"T{c:03d}", "username": f"teacher{c:03d}", "email": f"t{c}@bench.example",
               "last_name": "Преподаватель", "first_name": "Анна", "status": "active", "esia_id": None}
              for c in range(courses)]
    subs = [{"user_external_id": f"U{c:03d}-{s:04d}", "course_external_id": f"C{c:03d}", "role": "student",
             "status": "active"} for c in range(courses) for s in range(students)]
    subs += [{"user_external_id": f"T{c:03d}", "course_external_id": f"C{c:03d}", "role": "editingteacher",
              "status": "active"} for c in range(courses)]
    with engine.begin() as conn:
        conn.execute(tables["buf_users"].insert(), users)
        conn.execute(tables["buf_courses"].insert(), [
            {"external_id": f"C{c:03d}", "shortname": f"c{c:03d}", "fullname": f"Курс {c}",
             "start_date": date.today(), "end_date": None} for c in range(courses)])
        conn.execute(tables["buf_subscriptions"].insert(), subs)
    engine.dispose()
    assert commands.run(loaded, []).outcome == "ok"


def step(name: str, work: Any, moodle: httpx.Client, portal: httpx.Client, env: dict[str, str]) -> Any:
    def calls() -> tuple[int, int]:
        m = moodle.get(f"{env['BUFSYNC_MOODLE_URL']}/sandbox/stats", headers={"X-Sandbox-Token": TOKEN}).json()
        p = portal.get(env["BUFSYNC_SCOS_URL"].rsplit("/api/", 1)[0] + "/sandbox/stats").json()
        return sum(m["calls"].values()), sum(p["calls"].values())
    m0, p0 = calls()
    started = time.perf_counter()
    report = work()
    seconds = time.perf_counter() - started
    m1, p1 = calls()
    counts = {k: v for k, v in report.counts.items() if v and k != "moodle_calls"}
    print(f"{name:<34} {seconds:7.2f} s  moodle calls {m1 - m0:>5}  portal calls {p1 - p0:>6}  {counts}")
    return report, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--courses", type=int, default=50)
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.02,
                        help="seconds added to each portal call: the round trip to online.edu.ru")
    args = parser.parse_args()
    proc, env = sandbox(args.latency)
    url = fresh_database()
    try:
        loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": url, "BUFSYNC_MOODLE_URL": env["BUFSYNC_MOODLE_URL"],
                                      "BUFSYNC_MOODLE_TOKEN": TOKEN})
        scos = ScosSettings(
            url=env["BUFSYNC_SCOS_URL"], key=env["BUFSYNC_SCOS_KEY"], partner_id=env["BUFSYNC_SCOS_PARTNER_ID"],
            institution="bench", passport=PASSPORT, scenarios=[
                "publish", "moderation", "update", "archive", "enrol", "unenrol", "results", "progress"])
        portals = loaded.settings.portals.model_copy(update={"scos": scos})  # `portals:` since the registry
        loaded.settings = loaded.settings.model_copy(update={"portals": portals})
        started = time.perf_counter()
        fill(loaded, args.courses, args.students)
        moodle, portal = httpx.Client(timeout=60), httpx.Client(timeout=60)
        murl = env["BUFSYNC_MOODLE_URL"]
        for shortname, kind in (("scos_publish", "checkbox"), ("scos_id", "text")):
            admin(moodle, murl, "create_course_customfield", shortname=shortname, name=shortname, type=kind)
        from bufsync.adapters.moodle.client import MoodleClient
        with MoodleClient.connect(murl, TOKEN) as client:
            ids = [c["id"] for c in client.get_courses_by_field() if c["format"] != "site"]
            client.update_courses([{"id": i, "summary": "Описание", "customfields": [
                {"shortname": "scos_publish", "value": 1}]} for i in ids])
            for course_id in ids:
                items = [admin(moodle, murl, "create_grade_item", courseid=course_id, itemname=f"Работа {n}")["itemid"]
                         for n in (1, 2)]
                for user in client.get_enrolled_users(course_id):
                    if user["username"].startswith("u"):
                        for n, item in enumerate(items):
                            admin(moodle, murl, "set_grade", itemid=item, userid=user["id"], grade=60 + n * 20)
                admin(moodle, murl, "regrade_course", courseid=course_id)
        learners = args.courses * args.students
        print(f"portal round trip {args.latency * 1000:.0f} ms; "
              f"setup: {args.courses} courses x {args.students} students = {learners} learners, "
              f"{2 * learners} grades, in {time.perf_counter() - started:.1f} s\n")

        def scenarios():
            return run_portal(loaded, "scos")

        def dispatch():
            return run_dispatch(loaded, "scos")

        step("1 scenarios: publish", scenarios, moodle, portal, env)
        step("  dispatch", dispatch, moodle, portal, env)
        step("2 scenarios: settle", scenarios, moodle, portal, env)
        time.sleep(1.1)
        step("3 scenarios: moderation, enrol", scenarios, moodle, portal, env)
        enrol, enrol_s = step("  dispatch", dispatch, moodle, portal, env)
        step("4 scenarios: results, progress", scenarios, moodle, portal, env)
        results, results_s = step("  dispatch", dispatch, moodle, portal, env)
        idle, idle_s = step("5 scenarios: nothing to do", scenarios, moodle, portal, env)
        step("  dispatch: nothing to do", dispatch, moodle, portal, env)
        delivered = enrol.counts["done"] + results.counts["done"]
        rate = delivered / (enrol_s + results_s)
        state = portal.get(env["BUFSYNC_SCOS_URL"].rsplit("/api/", 1)[0] + "/sandbox/state").json()
        assert len(state["participation"]) == learners and len(state["results"]) == 2 * learners
        assert len(state["progress"]) == learners and not any(k.endswith(".queued") for k in idle.counts)
        print(f"\ndelivered {delivered} learner items at {rate:,.0f} items/s (one dispatcher: arrays of 10, "
              f"{loaded.settings.portals.scos.parallel_calls} in flight)")
        # baseline: every learner item again, one per call, as a script without state must do on each run
        sample = min(delivered, 2000)
        items = [{"course_id": state["courses"][i % len(state["courses"])]["id"], "session_id": "s",
                  "user_id": f"x{i}", "enroll_date": "2026-09-01"} for i in range(sample)]
        key = {"X-CN-UUID": env["BUFSYNC_SCOS_KEY"]}
        started = time.perf_counter()
        for item in items:
            portal.post(f"{env['BUFSYNC_SCOS_URL']}/courses/participation", json=[item], headers=key).raise_for_status()
        base_rate = sample / (time.perf_counter() - started)
        resend = delivered / base_rate
        print(f"baseline, one item per call: {base_rate:,.0f} items/s (measured on {sample} items); "
              f"bufsync delivers {rate / base_rate:.1f}x faster")
        print(f"a run with nothing to do: bufsync {idle_s:.2f} s and 0 portal writes; a stateless script re-sends "
              f"all {delivered} items: {resend:.0f} s ({resend / idle_s:.0f}x)")
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        proc.terminate()
        proc.wait()
        drop_database(url)


if __name__ == "__main__":
    main()
