"""Benchmark: reading course completion for every student of many courses from a real Moodle 4.5 (issue 15).

    set -a && . /srv/moodle-real/test.env && set +a
    python benchmarks/completion_real.py [--courses 20 --students 40 --completed 50 --perpage 100 1000 --rounds 3]
                                         [--no-per-user] [--keep]

Moodle 4.5 has no Web Service that answers course completion for all users of a course: the per-user one is
core_completion_get_course_completion_status. A report builder custom report on the "Course participants" datasource
(completion columns) read with core_reportbuilder_retrieve_report answers all of them, one call per page, across
courses. completion_real.php makes the courses (self completion, the same students in each, --completed % of them
completed), that report (made through the report builder's API: no web UI) and a web service of the benchmark's own
with the functions measured (the site's service is left alone). Printed, min / median of --rounds:
- per-user status calls: calls and seconds in all and per course, one call at a time and 4 in flight;
- the report, for each --perpage: calls (pages) and seconds in all and per course, and its rows checked (one per
  student and course, the completed ones "Yes" with the time completed);
- for scale, gradereport_user_get_grade_items with userid = 0, which a grade read makes once per course anyway.
Everything made is deleted at the end (--keep keeps it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

HELPER = Path(__file__).with_name("completion_real.php")
MOODLE_DIR = Path(os.environ.get("BUFSYNC_TEST_MOODLE_DIR", "/srv/moodle-real/moodle"))


def php(*args: str) -> Any:
    """The helper, in Moodle's directory with the site's PHP settings (php/ next to moodle/, as the lab has it)."""
    env = dict(os.environ, PHP_INI_SCAN_DIR=f":{MOODLE_DIR.parent / 'php'}", BUFSYNC_TEST_MOODLE_DIR=str(MOODLE_DIR))
    done = subprocess.run(["php", str(HELPER), *args], cwd=MOODLE_DIR, env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"completion_real.php {args[0]} failed: {done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class Moodle:
    """REST calls with the benchmark's own token, counted."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=300, limits=httpx.Limits(max_connections=8))
        self.token, self.calls = token, 0

    def __call__(self, function: str, **params: Any) -> Any:
        self.calls += 1
        response = self.http.post("/webservice/rest/server.php", data={
            "wstoken": self.token, "wsfunction": function, "moodlewsrestformat": "json",
            **{k: str(v) for k, v in params.items()}})
        body = response.json()
        if isinstance(body, dict) and "exception" in body:
            raise SystemExit(f"{function}: {body}")
        return body


def timed(moodle: Moodle, work: Callable[[], Any]) -> tuple[float, int, Any]:
    """Seconds, calls and the result of one measured piece of work."""
    before, started = moodle.calls, time.perf_counter()
    result = work()
    return time.perf_counter() - started, moodle.calls - before, result


def per_user(moodle: Moodle, made: dict[str, Any], in_flight: int) -> list[bool]:
    pairs = [(c, s) for c in made["courses"] for s in made["students"]]

    def one(pair: tuple[int, int]) -> bool:
        answer = moodle("core_completion_get_course_completion_status", courseid=pair[0], userid=pair[1])
        return bool(answer["completionstatus"]["completed"])
    if in_flight == 1:
        return [one(p) for p in pairs]
    with ThreadPoolExecutor(in_flight) as pool:
        return list(pool.map(one, pairs))


def report(moodle: Moodle, made: dict[str, Any], perpage: int) -> list[list[str]]:
    rows: list[list[str]] = []
    page = 0
    while True:
        data = moodle("core_reportbuilder_retrieve_report", reportid=made["report"], page=page,
                      perpage=perpage)["data"]
        rows += [row["columns"] for row in data["rows"]]
        page += 1
        if page * perpage >= data["totalrowcount"]:
            return rows


def line(name: str, runs: list[tuple[float, int, Any]], courses: int) -> str:
    seconds = [r[0] for r in runs]
    calls, median = runs[0][1], statistics.median(seconds)
    return (f"{name:<46} calls {calls:>6} ({calls / courses:7.2f}/course)   s min {min(seconds):7.3f} "
            f"median {median:7.3f}   per course {median / courses * 1000:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--courses", type=int, default=20)
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--completed", type=int, default=50, help="percent of the students who completed")
    parser.add_argument("--perpage", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-per-user", action="store_true", help="skip the per-user calls (slow on many courses)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("BUFSYNC_TEST_MOODLE_URL")
    if not url:
        raise SystemExit("export BUFSYNC_TEST_MOODLE_URL (../shared/moodle-real/up's test.env)")
    prefix = f"cb{int(time.time()) % 10**8:08d}{secrets.token_hex(2)}"
    started = time.perf_counter()
    made = php("setup", prefix, str(args.courses), str(args.students), str(args.completed))
    print(f"{args.courses} courses x {args.students} students, {args.completed}% completed: made in "
          f"{time.perf_counter() - started:.1f} s (prefix {prefix})")
    moodle = Moodle(url, made.pop("token"))
    expected = args.courses * sum(1 for i in range(args.students) if i * 100 < args.completed * args.students)
    try:
        for in_flight in () if args.no_per_user else (1, 4):
            runs = [timed(moodle, lambda n=in_flight: per_user(moodle, made, n)) for _ in range(args.rounds)]
            assert sum(runs[0][2]) == expected, (sum(runs[0][2]), expected)
            print(line(f"core_completion_get_course_completion_status x{in_flight}", runs, args.courses))
        for perpage in args.perpage:
            runs = [timed(moodle, lambda n=perpage: report(moodle, made, n)) for _ in range(args.rounds)]
            rows = runs[0][2]
            assert len(rows) == args.courses * args.students, len(rows)
            assert len({(r[0], r[1]) for r in rows}) == len(rows), "a page repeated rows"
            assert sum(1 for r in rows if r[2] == "Yes" and r[3]) == expected
            assert runs[0][1] == math.ceil(len(rows) / perpage)
            print(line(f"core_reportbuilder_retrieve_report perpage {perpage}", runs, args.courses))
        runs = [timed(moodle, lambda: [moodle("gradereport_user_get_grade_items", courseid=c, userid=0)
                                       for c in made["courses"]]) for _ in range(args.rounds)]
        print(line("gradereport_user_get_grade_items userid=0", runs, args.courses))
        print(f"a report row: {rows[0]}")
    finally:
        moodle.http.close()
        if not args.keep:
            php("teardown", prefix)


if __name__ == "__main__":
    main()
