"""Assignments, submissions and their files (mod_assign_get_assignments, mod_assign_get_submissions,
webservice/pluginfile.php) and activity completion, as a portal collecting learners' work reads them.

One world (WORLD) is built on the sandbox by the admin action `seed_assignments` and on a real Moodle 4.5 by
fixtures/assign_setup.php (which also puts the two functions into the bufsync service and lets it download
files). One script, through MoodleClient over HTTP, reads it back; its normalised answers must equal what the
real Moodle 4.5 answered (REAL below, recorded from ../shared/moodle-real), on the sandbox always and on the real
site when BUFSYNC_TEST_MOODLE_URL / _TOKEN are set. Every downloaded file must have the bytes the world gave it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.errors import MoodleError
from bufsync.adapters.moodle.transport import Transport
from bufsync.sandbox.moodle.functions.assign import file_content
from bufsync.sandbox.moodle.run import start

TOKEN = "a551a551a551a551a551a551a551a551"
ERR = "error"
T0 = 1767261600  # 2026-01-01 10:00 UTC: the essays' due date
FIXTURES = Path(__file__).resolve().parents[1] / "contract" / "fixtures"
SETUP_PHP = FIXTURES / "assign_setup.php"
REAL_JSON = FIXTURES / "assign_real.json"

# What the real Moodle 4.5 answered to script() (normalised; fixtures/assign_real.json), in order: the three
# courses' assignments flattened (the course without any adds none); the same course asked without
# includenotenrolledcourses (a warning: the admin is not enrolled) and a course that does not exist (a warning);
# every latest submission (files sorted by path and name, mimetypes by extension or sniffed, the online text, a
# draft, a text-only one graded, a new one with empty areas), an assignment without submissions (warning 3) and
# an unknown id (left out, no warning); since (newer ones only), status=submitted, since+before; the files
# downloaded (bytes checked in script()); a wrong token, a missing file, a missing submission, another site's URL
# (refused by the client); activity completion of a submitter (complete at its submission), a draft and a new
# submission (the rule not met).
REAL: list[Any] = json.loads(REAL_JSON.read_text(encoding="utf-8"))


def world(tag: str) -> dict[str, Any]:
    """Three courses; an essay (online text + files, drafts, completion on submission) with a submission of three
    files, a draft, one with text only and a new one; an assignment nobody opened; a project of another course
    with a large file and an older submission; a course without assignments."""
    pdf = {"filename": "эссе.pdf", "text": "%PDF-1.4 эссе Анны", "timemodified": T0 - 3000}
    plan = {"filename": "план.docx", "filepath": "/черновики/", "size": 3000, "seed": "plan", "timemodified": T0 - 2990}
    data = {"filename": "data.bin", "size": 70000, "seed": "data", "timemodified": T0 - 2980}
    notes = {"filename": "notes", "text": "plain notes without an extension\n", "timemodified": T0 - 2970}
    return {
        "users": [{"username": "asg-anna", "firstname": "Анна", "lastname": "Сдающая"},
                  {"username": "asg-boris", "firstname": "Борис", "lastname": "Черновой"},
                  {"username": "asg-vera", "firstname": "Вера", "lastname": "Текстовая"},
                  {"username": "asg-gleb", "firstname": "Глеб", "lastname": "Новый"}],
        "courses": [
            {"shortname": f"asg-{tag}-a", "fullname": f"Задания {tag} А",
             "students": ["asg-anna", "asg-boris", "asg-vera", "asg-gleb"],
             "assignments": [
                 {"name": f"Эссе {tag}", "intro": "<p>Напишите эссе</p>", "duedate": T0,
                  "allowsubmissionsfromdate": T0 - 7 * 86400, "grade": 100, "submissiondrafts": 1,
                  "completionsubmit": 1, "onlinetext": True, "timemodified": T0 - 10 * 86400,
                  "submissions": [
                      {"user": "asg-anna", "status": "submitted", "timecreated": T0 - 3600, "timemodified": T0 - 2900,
                       "onlinetext": "<p>Моё эссе</p>", "files": [pdf, plan, data, notes]},
                      {"user": "asg-boris", "status": "draft", "timecreated": T0 - 1800, "timemodified": T0 - 1700,
                       "files": [{"filename": "draft.txt", "text": "черновик", "timemodified": T0 - 1750}]},
                      {"user": "asg-vera", "status": "submitted", "timecreated": T0 - 1200, "timemodified": T0 - 1100,
                       "onlinetext": "<p>Только текст</p>", "grade": 80},
                      {"user": "asg-gleb", "status": "new", "timecreated": T0 - 600, "timemodified": T0 - 600}]},
                 {"name": f"Пустое {tag}", "intro": "Пока пусто", "timemodified": T0 - 10 * 86400, "submissions": []}]},
            {"shortname": f"asg-{tag}-b", "fullname": f"Задания {tag} Б", "students": ["asg-anna", "asg-boris"],
             "assignments": [
                 {"name": f"Проект {tag}", "intro": "Проект & отчёт", "duedate": T0 + 86400, "grade": 50,
                  "maxfiles": 5, "timemodified": T0 - 10 * 86400,
                  "submissions": [
                      {"user": "asg-anna", "status": "submitted", "timecreated": T0 - 500, "timemodified": T0 - 400,
                       "files": [{"filename": "отчёт.pdf", "size": 200_000, "seed": "report", "timemodified": T0 - 450},
                                 {"filename": "схема.png", "size": 1234, "seed": "png", "timemodified": T0 - 440}]},
                      {"user": "asg-boris", "status": "submitted", "timecreated": T0 - 90000,
                       "timemodified": T0 - 86400,
                       "files": [{"filename": "old.pdf", "text": "старое", "timemodified": T0 - 86400}]}]}]},
            {"shortname": f"asg-{tag}-c", "fullname": f"Задания {tag} В", "students": ["asg-anna"],
             "assignments": []}]}


def expected_files(spec: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """'<assignment>/<user>/<filepath><filename>' -> (size, sha256) of every file the world holds."""
    out = {}
    for course in spec["courses"]:
        for a in course["assignments"]:
            for s in a["submissions"]:
                for f in s.get("files", []) if s["status"] != "new" else []:
                    data = f["text"].encode() if "text" in f else file_content(f["seed"], f["size"])
                    out[f"{a['name']}/{s['user']}/{f.get('filepath', '/')}{f['filename']}"] = (
                        len(data), hashlib.sha256(data).hexdigest())
    return out


class Normaliser:
    """The world's ids by name (#course:a, #user:asg-anna, #assign:Эссе, #cm:..., #ctx:..., #sub:Эссе/asg-anna),
    the tag as {tag}, the site's URL as <site>, times near now as 'now'."""

    def __init__(self, ids: dict[str, Any], tag: str, site: str) -> None:
        self.tag, self.site, self.now = tag, site.rstrip("/"), int(time.time())
        self.names: dict[str, dict[int, str]] = {
            "course": {v: k.rsplit("-", 1)[1] for k, v in ids["courses"].items()},
            "user": {v: k for k, v in ids["users"].items()},
            "assign": {v["id"]: k for k, v in ids["assignments"].items()},
            "cm": {v["cmid"]: k for k, v in ids["assignments"].items()},
            "ctx": {v["contextid"]: k for k, v in ids["assignments"].items()},
            "sub": {v: k for k, v in ids["submissions"].items()}}

    def name(self, kind: str, value: Any) -> Any:
        found = self.names[kind].get(value) if isinstance(value, int) else None
        return f"#{kind}:{self.text(found)}" if found is not None else value

    def text(self, value: str) -> str:
        out = value.replace(self.site, "<site>").replace(self.tag, "{tag}")
        for kind in ("ctx", "sub"):  # the ids inside a file's URL
            for number, label in self.names[kind].items():
                marker = f"/{number}/" if kind == "sub" else f"/pluginfile.php/{number}/"
                out = out.replace(marker, marker.replace(str(number), f"#{kind}:{label.replace(self.tag, '{tag}')}"))
        return out

    def __call__(self, value: Any, key: str | None = None, owner: str | None = None) -> Any:
        """owner: what the dict holding `value` is (course, assignment, submission, warning, status)."""
        if isinstance(value, list):
            return [self(v, key, owner) for v in value]
        if isinstance(value, dict):
            return {k: self(v, k, _kind(value)) for k, v in value.items()}
        if isinstance(value, str):
            return self.text(value)
        if not isinstance(value, int) or isinstance(value, bool) or not value:
            return value
        if key in ("course", "courseid") or (key, owner) == ("id", "course"):
            return self.name("course", value)
        if key == "userid":
            return self.name("user", value)
        if key in ("assignmentid", "instance") or (key, owner) == ("id", "assignment"):
            return self.name("assign", value)
        if key == "cmid":
            return self.name("cm", value)
        if (key, owner) == ("id", "submission"):
            return self.name("sub", value)
        if key == "itemid" and owner is not None and owner.startswith("warning:"):
            return self.name({"course": "course", "assignment": "assign", "module3": "assign",
                              "module": "cm"}.get(owner[8:], "course"), value)
        if key in ("timemodified", "timecompleted") and abs(value - self.now) < 600:
            return "now"
        if key in ("timemodified", "timecreated", "duedate", "allowsubmissionsfromdate", "timecompleted") \
                and abs(value - T0) < 30 * 86400:
            return f"T0{value - T0:+d}"
        return value


def _kind(record: dict[str, Any]) -> str | None:
    """What a dict of an answer is, by its keys."""
    if "warningcode" in record:
        item = str(record.get("item"))
        return f"warning:{item}{'3' if item == 'module' and str(record['warningcode']) == '3' else ''}"
    if "attemptnumber" in record:
        return "submission"
    if "cmid" in record and "modname" not in record:
        return "assignment"
    if "shortname" in record:
        return "course"
    return None


def script(client: MoodleClient, url: str, ids: dict[str, Any], tag: str, spec: dict[str, Any]) -> list[Any]:
    norm = Normaliser(ids, tag, url)
    out: list[Any] = []

    def step(work: Callable[[], Any], normalise: Callable[[Any], Any] = norm) -> Any:
        try:
            result = work()
        except MoodleError as exc:
            out.append((ERR, exc.errorcode, exc.message))
            return None
        out.append(normalise(result))
        return result

    a, b, c = (ids["courses"][f"asg-{tag}-{x}"] for x in "abc")
    essay, empty, project = (ids["assignments"][f"{n} {tag}"]["id"] for n in ("Эссе", "Пустое", "Проект"))

    # assignments: of several courses (flattened, with their course id); a course the token's user is not
    # enrolled in is a warning unless includenotenrolledcourses; a course that does not exist is a warning
    assignments = step(lambda: client.assignments([a, b, c]))
    step(lambda: client.call("mod_assign_get_assignments", {"courseids": [a]}))
    step(lambda: client.call("mod_assign_get_assignments", {"courseids": [999999], "includenotenrolledcourses": 1}))

    # submissions: every latest attempt (files, text only, a draft, a new one), an assignment without any, an id
    # that does not exist; then since (the incremental read), status, before
    step(lambda: client.call("mod_assign_get_submissions", {"assignmentids": [essay, empty, project, 999999]}))
    step(lambda: client.submissions([essay, project], since=T0 - 1700))
    step(lambda: client.call("mod_assign_get_submissions", {"assignmentids": [essay], "status": "submitted"}),
         lambda r: [(norm(s["id"], "id", "submission"), s["status"]) for x in r["assignments"]
                    for s in x["submissions"]] + norm(r["warnings"]))
    step(lambda: client.call("mod_assign_get_submissions", {"assignmentids": [project], "since": T0 - 90000,
                                                            "before": T0 - 1000}),
         lambda r: [norm(s["id"], "id", "submission") for x in r["assignments"] for s in x["submissions"]])

    # downloads: each file, its bytes as uploaded
    files = {}
    for x in client.submissions([essay, project]):
        for s in x["submissions"]:
            for plugin in s["plugins"]:
                for area in plugin.get("fileareas", []):
                    for f in area.get("files", []):
                        label = f"{norm.names['assign'][x['assignmentid']]}/{norm.names['user'][s['userid']]}/" \
                                f"{f['filepath']}{f['filename']}"
                        files[label] = f["fileurl"]
    expected = expected_files(spec)
    got = {}
    for label, fileurl in sorted(files.items()):
        sink = io.BytesIO()
        written, sha = client.download(fileurl, sink)
        assert hashlib.sha256(sink.getvalue()).hexdigest() == sha
        got[label] = (written, sha)
    assert got == expected
    out.append(sorted(label.replace(tag, "{tag}") for label in got))

    # refusals: a wrong token, a file that is not there, a submission that is not there, another site's URL
    some = files[min(files)]
    with Transport(url, "0123456789abcdef0123456789abcdef", timeout=60, attempts=1) as wrong:
        step(lambda: wrong.download(some, io.BytesIO()))
    step(lambda: client.download(some.rsplit("/", 1)[0] + "/nope.pdf", io.BytesIO()))
    essay_ctx = ids["assignments"][f"Эссе {tag}"]["contextid"]
    step(lambda: client.download(f"{url}/webservice/pluginfile.php/{essay_ctx}/assignsubmission_file/"
                                 "submission_files/999999/x.pdf", io.BytesIO()))
    try:
        client.download("https://elsewhere.example/webservice/pluginfile.php/1/a/b/1/x.pdf", io.BytesIO())
        out.append("sent")
    except ValueError:
        out.append("refused: another site")

    # activity completion: submitted (complete, the rule met), draft and new (incomplete)
    for user in ("asg-anna", "asg-boris", "asg-gleb"):
        step(lambda user=user: client.activities_completion(a, ids["users"][user]))
    assert assignments is not None
    return out


def _run(url: str, token: str, ids: dict[str, Any], tag: str, spec: dict[str, Any]) -> list[Any]:
    """script()'s answers as JSON has them (tuples as lists), to compare with REAL."""
    with MoodleClient(Transport(url, token, timeout=60)) as client:
        return json.loads(json.dumps(script(client, url, ids, tag, spec)))  # type: ignore[no-any-return]


def test_the_sandbox_answers_as_the_real_moodle() -> None:
    tag = f"s{time.time_ns() % 10**6}"
    spec = world(tag)
    server = start(port=0, token=TOKEN)
    try:
        ids = server.site.admin("seed_assignments", {"world": spec})
        server.site.admin("service", {"downloadfiles": True})
        assert _run(server.url, TOKEN, ids, tag, spec) == REAL
    finally:
        server.shutdown()
        server.server_close()
        server.site.close()


def test_a_service_that_may_not_download_files_is_refused() -> None:
    """The recorded site's service: "Can download files" off; site info says so and downloads are refused."""
    spec = world("d")
    server = start(port=0, token=TOKEN)
    try:
        server.site.admin("seed_assignments", {"world": spec})
        with MoodleClient(Transport(server.url, TOKEN, timeout=30)) as client:
            assert client.site_info()["downloadfiles"] == 0
            essay = client.assignments(list(server.site.admin("seed_assignments", {"world": world("e")})
                                            ["courses"].values()))[0]["id"]
            fileurl = client.submissions([essay])[0]["submissions"][0]["plugins"][1]["fileareas"][0]["files"][0][
                "fileurl"]
            with pytest.raises(MoodleError) as refused:
                client.download(fileurl, io.BytesIO())
            assert (refused.value.errorcode, refused.value.message) == ("accessexception", "Access control exception")
            assert "Can download files" in refused.value.fix()
            server.site.admin("service", {"downloadfiles": True})
            assert client.site_info()["downloadfiles"] == 1
            assert client.download(fileurl, io.BytesIO())[0] > 0
    finally:
        server.shutdown()
        server.server_close()
        server.site.close()


def test_a_download_is_retried_from_the_start_and_its_token_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A 503, then a connection dropped without an answer: the download is sent again, the sink rewound, the bytes
    whole; the token travels in the POST body, so no log line (httpx logs every request's URL) carries it."""
    import logging

    from bufsync.sandbox.faults import FaultRule
    spec = world("f")
    server = start(port=0, token=TOKEN, faults=[FaultRule("http_503", function="pluginfile", count=1),
                                                FaultRule("drop", function="pluginfile", count=1, skip=1)])
    try:
        ids = server.site.admin("seed_assignments", {"world": spec})
        server.site.admin("service", {"downloadfiles": True})
        caplog.set_level(logging.DEBUG)
        with MoodleClient(Transport(server.url, TOKEN, timeout=30, backoff=0.01)) as client:
            essay = ids["assignments"]["Эссе f"]["id"]
            files = {f["filename"]: f for f in server.site.admin("submission_files", {"assignmentid": essay})}
            sink = io.BytesIO(b"left from before")
            sink.seek(0, io.SEEK_END)
            written, sha = client.download(files["data.bin"]["fileurl"], sink)
            assert (written, sha) == (70000, files["data.bin"]["sha256"])
            assert sink.getvalue()[:16] == b"left from before" and len(sink.getvalue()) == 16 + 70000
            assert client.transport.stats.by_function["webservice/pluginfile.php"] == 3
        assert "Service Unavailable" in caplog.text or "503" in caplog.text  # the retry was said
        assert TOKEN not in caplog.text
    finally:
        server.shutdown()
        server.server_close()
        server.site.close()


def test_a_thousand_files_cost_rows_not_bytes() -> None:
    """fill_submissions for benchmarks: 500 students x 2 files of 1 MB, stored as a few rows; each download is
    generated on the fly and hashes as submission_files says."""
    from bufsync.sandbox.moodle.site import Site, SiteConfig
    site = Site(SiteConfig(token=TOKEN))
    try:
        users = [{"username": f"bulk{n}", "firstname": "Б", "lastname": str(n)} for n in range(500)]
        ids = site.admin("seed_assignments", {"world": {"users": users, "courses": [
            {"shortname": "bulk", "fullname": "Bulk", "students": [u["username"] for u in users],
             "assignments": [{"name": "Bulk", "intro": "", "submissions": []}]}]}})
        started = time.perf_counter()
        made = site.admin("fill_submissions", {"assignmentid": ids["assignments"]["Bulk"]["id"], "files": 2,
                                               "size": 1_000_000})
        assert made == {"submissions": 500, "files": 1000}
        assert time.perf_counter() - started < 30  # generous: the machine is shared; typically well under 1 s
        stored = site.store.row("SELECT COUNT(*) AS n, SUM(LENGTH(content)) AS bytes FROM files")
        assert (stored["n"], stored["bytes"]) == (1000, None)
    finally:
        site.close()


def _real_setup(spec: dict[str, Any]) -> dict[str, Any]:
    """fixtures/assign_setup.php: the world on the real site, the functions in its service, downloads allowed."""
    moodle = Path(os.environ.get("BUFSYNC_TEST_MOODLE_DIR", "/srv/moodle-real/moodle"))
    if not (moodle / "config.php").is_file():
        pytest.skip(f"no Moodle code at {moodle} (BUFSYNC_TEST_MOODLE_DIR) to run assign_setup.php")
    env = dict(os.environ, PHP_INI_SCAN_DIR=f":{moodle.parent / 'php'}")
    done = subprocess.run(["php", str(SETUP_PHP)], cwd=moodle, env=env, input=json.dumps(spec),
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.moodle
@pytest.mark.skipif(not (os.environ.get("BUFSYNC_TEST_MOODLE_URL") and os.environ.get("BUFSYNC_TEST_MOODLE_TOKEN")),
                    reason="no real Moodle: run ../shared/moodle-real/up and export BUFSYNC_TEST_MOODLE_URL / "
                           "BUFSYNC_TEST_MOODLE_TOKEN from its test.env")
def test_the_real_moodle_still_answers_so() -> None:
    tag = f"r{time.time_ns() % 10**6}"
    spec = world(tag)
    ids = _real_setup(spec)
    assert _run(os.environ["BUFSYNC_TEST_MOODLE_URL"], os.environ["BUFSYNC_TEST_MOODLE_TOKEN"], ids, tag,
                spec) == REAL
