"""Benchmark: the Университет 2035 footprint against the real peers — the xAPI LRS ralph-malph (its own virtualenv,
file backend) and moto's S3 server, each in its own process — from the sandbox Moodle (its own process too).

    python benchmarks/u2035.py [--learners 5000] [--per-course 100] [--files 1000] [--single 2000]
                               [--buffer-url URL] [--quick]

The sandbox Moodle holds learners in courses of --per-course; each learner has an enrolment, 8 completed
activities, 8 grades and the course total, a course completion, and (for --files / 2 learners) a submission with
two 50 KB files: about 20 statements a learner. The buffer (SQLite in a temporary directory, or --buffer-url: an
empty database) holds each learner's UNTI id. The connection is made through the four stages (ralph for both
contours, moto for S3), then:
1. the footprint run: facts read from Moodle, statements queued (facts/s, Moodle calls);
2. delivery, in the same run: --single statements one per POST (the baseline), then the rest in POSTs of 100
   (statements/s each, and the ratio); every statement must then be in the LRS once, every file in S3 once;
3. a run with nothing new: no statement queued, and its dispatch makes no POST;
peak RSS of this process (bufsync), the sandbox Moodle, ralph and moto.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
TOKEN = "b2035b2035b2035b2035b2035b2035b2"
ACTIVITIES = 8   # completed activities a learner (assignments with completion tracking)
GRADED = 8       # manual grade items a learner (and the course total)
FILE_SIZE = 50_000
QUICK = {"learners": 500, "per_course": 100, "files": 200, "single": 300}


def serve_moodle(learners: int, per_course: int, files: int) -> None:
    """The child process: the sandbox Moodle, seeded in-process, then serving until stdin closes."""
    from bufsync.sandbox.moodle.functions.assign import _ws
    from bufsync.sandbox.moodle.run import start
    server = start(port=0, token=TOKEN)
    site = server.site
    started = time.perf_counter()
    courses = []
    for c in range(-(-learners // per_course)):
        courses.append(int(_ws(site, "core_course_create_courses", {"courses": {0: {
            "fullname": f"Курс {c}", "shortname": f"bench-{c}", "idnumber": f"BC{c:03d}", "categoryid": 1,
            "enablecompletion": 1}}})[0]["id"]))
    users = []
    for start_at in range(0, learners, 500):
        batch = {n: {"username": f"l{i:06d}", "password": "Lab#Pass2026", "firstname": "Учащийся",
                     "lastname": f"№{i}", "email": f"l{i:06d}@bench.example", "idnumber": f"L{i:06d}"}
                 for n, i in enumerate(range(start_at, min(learners, start_at + 500)))}
        users += [int(u["id"]) for u in _ws(site, "core_user_create_users", {"users": batch})]
    with_files, made_files = files // 2, 0
    for c, courseid in enumerate(courses):
        members = users[c * per_course:(c + 1) * per_course]
        _ws(site, "enrol_manual_enrol_users", {"enrolments": {n: {"roleid": 5, "userid": u, "courseid": courseid}
                                                              for n, u in enumerate(members)}})
        cms = [site.admin("create_assignment", {"courseid": courseid, "name": f"Работа {k}", "completion": 1})
               for k in range(ACTIVITIES)]
        for cm in cms:
            for u in members:
                site.admin("set_activity_completion", {"cmid": cm["cmid"], "userid": u, "state": 1})
        site.admin("fill_gradebook", {"courseid": courseid, "items": GRADED})
        site.admin("set_completion_criteria", {"courseid": courseid, "criteria": [{"type": "self"}], "enable": True})
        for u in members:
            site.admin("mark_completion", {"courseid": courseid, "userid": u, "criteria": ["self"],
                                           "complete_course": True, "timecompleted": 1_790_000_000})
        if with_files > 0:
            made = site.admin("fill_submissions", {"assignmentid": cms[0]["assign_instance"], "files": 2,
                                                   "size": FILE_SIZE, "timemodified": 1_790_000_000,
                                                   "seed": f"c{c}"})
            with_files -= made["submissions"]
            made_files += made["files"]
    site.admin("service", {"downloadfiles": True})
    print(json.dumps({"url": server.url, "seeded_s": round(time.perf_counter() - started, 1), "files": made_files}),
          flush=True)
    sys.stdin.read()
    server.shutdown()
    server.server_close()
    site.close()


def rss() -> float:
    """This process's peak RSS, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children_rss(parent: int) -> float:
    """Peak RSS of a process and its children (ralph's uvicorn runs under its python)."""
    total = peak_rss_mb(parent)
    children = Path(f"/proc/{parent}/task/{parent}/children")
    for child in (children.read_text().split() if children.exists() else []):
        total += children_rss(int(child))
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learners", type=int, default=5000)
    parser.add_argument("--per-course", type=int, default=100)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--single", type=int, default=2000, help="statements sent one per POST (the baseline)")
    parser.add_argument("--buffer-url")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve-moodle", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.serve_moodle:
        serve_moodle(args.learners, args.per_course, args.files)
        return
    sys.path.insert(0, str(REPO))
    from tests.peers import RalphServer, ensure_ralph_venv, free_port, ralph_venv

    work = Path(tempfile.mkdtemp(prefix="bench-u2035-"))
    t0 = time.perf_counter()
    moodle = subprocess.Popen([sys.executable, __file__, "--serve-moodle", "--learners", str(args.learners),
                               "--per-course", str(args.per_course), "--files", str(args.files)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert moodle.stdout is not None
    ralph = RalphServer(ensure_ralph_venv(ralph_venv()), work / "ralph")
    lrs = ralph.start()
    s3_port = free_port()
    moto = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p",
                             str(s3_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    info = json.loads(moodle.stdout.readline())
    print(f"setup: sandbox Moodle seeded in {info['seeded_s']} s ({args.learners} learners, "
          f"{-(-args.learners // args.per_course)} courses); ralph and moto up in {time.perf_counter() - t0:.1f} s")
    try:
        args.files = info["files"]  # every learner of a course gets a submission: whole courses' worth
        bench(args, work, info["url"], lrs, f"http://127.0.0.1:{s3_port}", moodle, ralph, moto)
    finally:
        ralph.stop()
        moto.terminate()
        assert moodle.stdin is not None
        moodle.stdin.close()
        moodle.wait(60)
        moto.wait(30)


def bench(args: argparse.Namespace, work: Path, moodle_url: str, lrs: Any, s3: str, moodle: subprocess.Popen[str],
          ralph: Any, moto: subprocess.Popen[bytes]) -> None:
    import boto3
    from botocore.config import Config

    from bufsync import migrations
    from bufsync.config import load_settings
    from bufsync.db import create_buffer_engine
    from bufsync.mapping import load_mappings
    from bufsync.portals.runs import run_dispatch, run_portal
    from bufsync.portals.u2035 import connection
    from bufsync.schema import build_metadata

    s3_client = boto3.session.Session().client("s3", endpoint_url=s3, aws_access_key_id="AKIABENCH",
                                               aws_secret_access_key="bench-secret", region_name="us-east-1",
                                               config=Config(s3={"addressing_style": "path"}))
    s3_client.create_bucket(Bucket="footprint")
    url = args.buffer_url or f"sqlite:///{work / 'buffer.db'}"
    config = work / "bufsync.yaml"
    config.write_text(json.dumps({"portals": {"u2035": {
        "organisation": "Бенчмарк", "courses": "idnumber", "statements_per_post": 100, "batch": 500,
        "lease_seconds": 600}}}), encoding="utf-8")
    env = {"BUFSYNC_BUFFER_URL": url, "BUFSYNC_MOODLE_URL": moodle_url, "BUFSYNC_MOODLE_TOKEN": TOKEN}
    loaded = load_settings(config, env)
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    engine = create_buffer_engine(url)
    users = build_metadata(mappings).tables["buf_users"]
    with engine.begin() as conn:
        conn.execute(users.insert(), [{"external_id": f"L{i:06d}", "username": f"l{i:06d}", "last_name": f"№{i}",
                                       "first_name": "Учащийся", "email": f"l{i:06d}@bench.example",
                                       "status": "active", "unti_id": str(700_000 + i)}
                                      for i in range(args.learners)])
    answers = {"test_lrs_url": lrs.base_url, "test_key": lrs.key, "test_secret": lrs.secret,
               "lrs_url": lrs.base_url, "key": lrs.key, "secret": lrs.secret, "s3_endpoint": s3,
               "s3_bucket": "footprint", "s3_access_key": "AKIABENCH", "s3_secret_key": "bench-secret"}
    state = connection.connect(loaded, connection.Scripted(answers, True, out=lambda _: None, every=True))
    loaded = load_settings(config, env)  # with the answers connect wrote into the file
    assert state.active, state.last_error

    # 1. the footprint run
    started = time.perf_counter()
    run = run_portal(loaded, "u2035")
    run_s = time.perf_counter() - started
    facts = sum(v for k, v in run.counts.items() if k.startswith("facts."))
    queued = run.counts.get("queued", 0)
    kinds = ", ".join(f"{k[6:]} {v}" for k, v in sorted(run.counts.items()) if k.startswith("facts."))
    print(f"\n1. footprint run: {facts} facts ({kinds}) in {run_s:.1f} s = {facts / run_s:,.0f} facts/s; "
          f"{run.counts.get('moodle_calls')} Moodle calls; {queued} statements queued; peak RSS so far {rss():.0f} MB")

    # 2. delivery: a baseline one statement per POST, then the rest batched
    handler_class = __import__("bufsync.portals.u2035.dispatch", fromlist=["U2035Handler"]).U2035Handler
    posts: list[int] = []
    original = handler_class._post
    from bufsync.portals.u2035.lrs import LrsClient
    in_lrs = [0.0]  # seconds spent waiting for the LRS's answers: the peer's share of the delivery
    original_post = LrsClient.post

    def timed(self: Any, statements: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_post(self, statements)
        finally:
            in_lrs[0] += time.perf_counter() - started
    LrsClient.post = timed  # type: ignore[method-assign]

    def counted(self: Any, part: Any) -> Any:
        posts.append(len(part))
        return original(self, part)
    handler_class._post = counted  # type: ignore[method-assign]
    single_n = min(args.single, queued)
    single = loaded.settings.portals.u2035.model_copy(update={"statements_per_post": 1, "batch": 100})
    from bufsync.portals import with_section
    loaded_single = load_settings(config, env)
    loaded_single.settings = with_section(loaded_single.settings, "u2035", single)
    stop = threading.Event()
    original_call = handler_class.__call__

    def limited(self: Any, items: list[dict[str, Any]]) -> Any:
        out = original_call(self, items)
        if sum(posts) >= single_n:
            stop.set()
        return out
    handler_class.__call__ = limited  # type: ignore[method-assign]
    started = time.perf_counter()
    first = run_dispatch(loaded_single, "u2035", until_empty=True, stop=stop)
    single_s = time.perf_counter() - started
    single_done, single_posts, single_lrs = first.counts["done"], len(posts), in_lrs[0]
    in_lrs[0] = 0.0
    handler_class.__call__ = original_call  # type: ignore[method-assign]
    posts.clear()
    started = time.perf_counter()
    second = run_dispatch(loaded, "u2035", until_empty=True)
    batched_s = time.perf_counter() - started
    batched_done, batched_posts, batched_lrs = second.counts["done"], len(posts), in_lrs[0]
    single_rate, batched_rate = single_done / single_s, batched_done / batched_s
    print(f"2. delivery to ralph (+ files to moto):\n"
          f"   one statement a POST: {single_done} statements, {single_posts} POSTs in {single_s:.1f} s = "
          f"{single_rate:,.0f} statements/s ({single_lrs:.1f} s of it waiting for ralph)\n"
          f"   100 a POST:           {batched_done} statements, {batched_posts} POSTs in {batched_s:.1f} s = "
          f"{batched_rate:,.0f} statements/s  ({batched_rate / single_rate:.1f}x the baseline; {batched_lrs:.1f} s of "
          f"it waiting for ralph)")
    # the world: every statement once in the LRS, every file once in S3
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT state, count(*) FROM sync_u2035_statements GROUP BY state")).all()
        stored_files = conn.execute(sa.text("SELECT count(*) FROM sync_u2035_files")).scalar_one()
    states = dict(rows)
    delivered_rss = rss()  # before the check below, which reads ralph's whole store
    lines = []
    with ralph.directory.joinpath("fs_lrs.jsonl").open(encoding="utf-8") as store:
        for line in store:
            if line.strip():
                lines.append(json.loads(line)["id"])
    objects = sum(page.get("KeyCount", 0) for page in s3_client.get_paginator("list_objects_v2").paginate(
        Bucket="footprint"))
    assert states == {"sent": queued}, states
    assert len(lines) == len(set(lines)) == queued + 2, (len(lines), len(set(lines)), queued)  # + the 2 checks
    assert objects == stored_files == args.files, (objects, stored_files)
    print(f"   checked: {queued} statements in ralph once each (+2 connection checks), {objects} files in S3 "
          f"({objects * FILE_SIZE / 1e6:.0f} MB), every row `sent`")

    # 3. nothing new
    posts.clear()
    started = time.perf_counter()
    again = run_portal(loaded, "u2035")
    third = run_dispatch(loaded, "u2035", until_empty=True)
    print(f"   peak RSS after the delivery {delivered_rss:.0f} MB")
    print(f"3. nothing new: run {time.perf_counter() - started:.1f} s, queued {again.counts.get('queued', 0)}, "
          f"dispatch claimed {third.counts['claimed']}, POSTs {len(posts)}")
    assert again.counts.get("queued", 0) == 0 and not posts
    own = rss()
    print(f"peak RSS: bufsync {own:.0f} MB, sandbox Moodle {peak_rss_mb(moodle.pid):.0f} MB, "
          f"ralph {children_rss(ralph.process.pid):.0f} MB, moto {peak_rss_mb(moto.pid):.0f} MB")
    engine.dispose()


if __name__ == "__main__":
    main()
