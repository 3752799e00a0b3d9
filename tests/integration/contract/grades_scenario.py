"""Issue 15's grades-and-completion scenario, made the same way on a real Moodle 4.5 (fixtures/grades_scenario.php,
Moodle's own PHP API) and on the sandbox (its admin actions and web-service functions), and what the Web Services
answer for it there, with ids and "now" replaced by names so that the two sides' answers compare whole.

The scenario: a course with completion on, a course scale «неудовлетворительно … отлично» and the course's own
letters; an assignment (max 50) graded through grade_update() with fixed submission and grading dates, manual items
(numeric with a pass grade, scale with a pass grade, one shown as letters), the course total shown as letters
with a pass grade;
four students: ann (graded, completed), bob (graded, completed, then his enrolment suspended), vera (graded,
completed, then unenrolled), gleb (graded, his course total overridden); tom, an editing teacher whose preference
shows suspended users in grade reports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bufsync.sandbox.moodle.site import Site

PHP_SCRIPT = Path(__file__).resolve().parent / "fixtures" / "grades_scenario.php"
MOODLE_DIR = Path(os.environ.get("BUFSYNC_TEST_MOODLE_DIR", "/srv/moodle-real/moodle"))

# The PHP script's constants (keep in step with it).
SUBMITTED, GRADED, SELF_DONE, COMPLETED = 1756684800, 1756771200, 1757030400, 1757116800
SCALE = "неудовлетворительно,удовлетворительно,хорошо,отлично"
LETTERS = {85: "отлично", 70: "хорошо", 50: "удовлетворительно", 0: "неудовлетворительно"}
PEOPLE = {"ann": ("Активная", "Анна"), "bob": ("Заморозов", "Борис"), "vera": ("Ушедшая", "Вера"),
          "gleb": ("Переоценённый", "Глеб"), "tom": ("Тимофеев", "Тимофей")}
STUDENTS = ("ann", "bob", "vera", "gleb")
GRADES: dict[str, dict[str, float]] = {
    "ann": {"essay": 40, "num": 75, "scale": 4, "letter": 88},
    "bob": {"essay": 20, "num": 45, "scale": 2, "letter": 55},
    "vera": {"num": 90, "scale": 3},
    "gleb": {"num": 30, "scale": 1, "letter": 10},
}
OVERRIDDEN_TOTAL = 150  # gleb's course total
TOTAL_PASS = 127  # the course total's pass grade
GRADE_TYPE_SCALE, GRADE_DISPLAY_TYPE_LETTER = 2, 3

# (wsfunction, parameters, as whom: a login suffix, or None for the token's admin)
Call = Callable[[str, dict[str, Any], str | None], Any]
# What observe() answers, by name.
ANSWERS = ["grades/all", "grades/all-as-teacher", *[f"{kind}/{name}" for name in STUDENTS
                                                     for kind in ("grades", "completion")], "gradeitems"]
RECORDED = Path(__file__).resolve().parent / "fixtures" / "grades_scenario.json"


def recorded() -> dict[str, Any]:
    """What the real Moodle 4.5 answered (observe(), normalised), kept so the sandbox is held to it in CI."""
    return json.loads(RECORDED.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


# --- the real Moodle ----------------------------------------------------------------------------------------

def php_available() -> str | None:
    """Why the real scenario cannot be made here, or None."""
    if shutil.which("php") is None:
        return "no php binary"
    if not (MOODLE_DIR / "config.php").is_file():
        return f"no Moodle at {MOODLE_DIR} (BUFSYNC_TEST_MOODLE_DIR)"
    return None


def _php(*args: str) -> Any:
    """Run the fixture script with the site's PHP settings (its php/ directory next to moodle/, as the lab has it)."""
    ini = MOODLE_DIR.parent / "php"
    env = dict(os.environ, PHP_INI_SCAN_DIR=os.environ.get("BUFSYNC_TEST_MOODLE_PHP_INI_SCAN_DIR", f":{ini}"),
               BUFSYNC_TEST_MOODLE_DIR=str(MOODLE_DIR))
    done = subprocess.run(["php", str(PHP_SCRIPT), *args], cwd=MOODLE_DIR, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"grades_scenario.php {args[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def real_scenario(prefix: str) -> dict[str, Any]:
    return _php("create", prefix)  # type: ignore[no-any-return]


def real_delete(prefix: str) -> None:
    _php("delete", prefix)


def real_call(url: str, token: str, prefix: str) -> Call:
    """The admin's calls over REST with the token; another user's through the script (it has no token)."""
    import httpx

    def call(function: str, params: dict[str, Any], as_user: str | None = None) -> Any:
        if as_user is not None:
            return _php("call", prefix, as_user, function, json.dumps(params))
        response = httpx.post(f"{url}/webservice/rest/server.php", timeout=120, data={
            "wstoken": token, "wsfunction": function, "moodlewsrestformat": "json",
            **{k: str(v) for k, v in params.items()}})
        return response.json()
    return call


# --- the sandbox ----------------------------------------------------------------------------------------------

def _sandbox_ws(site: Site, token: str, function: str, params: dict[str, Any]) -> Any:
    """One REST call to the in-memory site; params may nest one list of records (users[0][username])."""
    pairs = [("wstoken", token), ("wsfunction", function), ("moodlewsrestformat", "json")]
    for name, value in params.items():
        if isinstance(value, list):
            pairs += [(f"{name}[{i}][{k}]", str(v)) for i, record in enumerate(value) for k, v in record.items()]
        else:
            pairs.append((name, str(value)))
    body = site.call(pairs).body
    return None if body == b"null" else json.loads(body)


def sandbox_steps(site: Site, clock: int) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(ws, admin) for a scenario's steps on the sandbox, its clock stopped at `clock`: a web service call as the
    admin that must not fail, and an admin action."""
    token = site.config.token
    site.admin("clock", {"at": clock})

    def ws(function: str, **params: Any) -> Any:
        result = _sandbox_ws(site, token, function, params)
        assert not (isinstance(result, dict) and "exception" in result), (function, result)
        return result

    def admin(action: str, **args: Any) -> Any:
        return site.admin(action, args)
    return ws, admin


def sandbox_scenario(site: Site, prefix: str, clock: int = 1796000000) -> dict[str, Any]:
    """The PHP script's steps on the sandbox, in the same order; answers what the script prints."""
    ws, admin = sandbox_steps(site, clock)

    course = ws("core_course_create_courses", courses=[{
        "fullname": f"{prefix} Оценки и завершение", "shortname": f"{prefix}-GR", "idnumber": f"{prefix}-GR",
        "categoryid": 1, "enablecompletion": 1}])[0]["id"]
    users = {name: ws("core_user_create_users", users=[{
        "username": prefix + name, "password": "Lab#Pass2026", "firstname": first, "lastname": last,
        "email": f"{prefix}{name}@example.com", "idnumber": f"{prefix}-{name.upper()}"}])[0]["id"]
        for name, (last, first) in PEOPLE.items()}
    ws("enrol_manual_enrol_users", enrolments=[{"roleid": 3 if name == "tom" else 5, "userid": uid,
                                                "courseid": course} for name, uid in users.items()])
    ws("core_user_update_users", **{"users[0][id]": users["tom"], "users[0][preferences][0][type]":
                                    "grade_report_showonlyactiveenrol", "users[0][preferences][0][value]": "0"})
    scale = admin("create_scale", courseid=course, name=f"{prefix} Оценка", scale=SCALE)["scaleid"]
    admin("set_grade_letters", courseid=course, letters=LETTERS)
    essay = admin("create_assignment", courseid=course, name="Эссе", grademax=50, idnumber=f"{prefix}-ESSAY")
    items = {"essay": essay["itemid"]}
    items["num"] = admin("create_grade_item", courseid=course, itemname="Контрольная", idnumber=f"{prefix}-NUM",
                         grademax=100, gradepass=50)["itemid"]
    items["scale"] = admin("create_grade_item", courseid=course, itemname="Экзамен", idnumber=f"{prefix}-SCALE",
                           gradetype=GRADE_TYPE_SCALE, scaleid=scale, gradepass=3)["itemid"]
    items["letter"] = admin("create_grade_item", courseid=course, itemname="Зачёт", idnumber=f"{prefix}-LET",
                            grademax=100, display=GRADE_DISPLAY_TYPE_LETTER)["itemid"]
    items["total"] = admin("update_grade_item", courseid=course, course_total=True,
                           display=GRADE_DISPLAY_TYPE_LETTER, gradepass=TOTAL_PASS)["itemid"]
    for name, byitem in GRADES.items():
        for key, grade in byitem.items():
            extra: dict[str, Any] = {"datesubmitted": SUBMITTED, "dategraded": GRADED} if key == "essay" else {}
            if name == "ann" and key == "num":
                extra = {"feedback": "Хорошо, молодец", "feedbackformat": 2}
            admin("set_grade", itemid=items[key], userid=users[name], grade=grade, **extra)
    admin("regrade_course", courseid=course)
    admin("set_grade", courseid=course, course_total=True, userid=users["gleb"], grade=OVERRIDDEN_TOTAL)
    criteria = admin("set_completion_criteria", courseid=course, criteria=[{"type": "self"}])["criteria"][0]
    for name in ("ann", "bob", "vera"):
        admin("mark_completion", courseid=course, userid=users[name], criteria=["self"], timecompleted=SELF_DONE)
        admin("mark_completion", courseid=course, userid=users[name], complete_course=True, timecompleted=COMPLETED)
    ws("enrol_manual_enrol_users", enrolments=[{"roleid": 5, "userid": users["bob"], "courseid": course,
                                                "suspend": 1}])
    ws("enrol_manual_unenrol_users", enrolments=[{"userid": users["vera"], "courseid": course}])
    categoryid = site.store.row("SELECT categoryid FROM grade_items WHERE id = ?", (items["num"],))["categoryid"]
    return {"prefix": prefix, "course": course, "users": users, "items": items, "cmid": essay["cmid"],
            "assign": essay["assign_instance"], "scale": scale, "criteria": criteria, "categoryid": categoryid,
            "started": clock, "finished": clock}


def sandbox_call(site: Site, made: dict[str, Any]) -> Call:
    """The admin's calls with the site's token; tom's with a token of his own."""
    tom = "7" * 32
    site.admin("add_token", {"token": tom, "userid": made["users"]["tom"]})

    def call(function: str, params: dict[str, Any], as_user: str | None = None) -> Any:
        assert as_user in (None, "tom"), as_user
        return _sandbox_ws(site, tom if as_user else site.config.token, function, params)
    return call


# --- what both answer ----------------------------------------------------------------------------------------

def observe(call: Call, made: dict[str, Any]) -> dict[str, Any]:
    """Every answer the scenario is about, by name: grades of all users (as the admin and as the teacher), of each
    student, each student's completion status, the item definitions."""
    course, users = made["course"], made["users"]
    out = {"grades/all": call("gradereport_user_get_grade_items", {"courseid": course, "userid": 0}, None),
           "grades/all-as-teacher": call("gradereport_user_get_grade_items", {"courseid": course, "userid": 0}, "tom")}
    for name in STUDENTS:
        out[f"grades/{name}"] = call("gradereport_user_get_grade_items", {"courseid": course, "userid": users[name]},
                                     None)
        out[f"completion/{name}"] = call("core_completion_get_course_completion_status",
                                         {"courseid": course, "userid": users[name]}, None)
    out["gradeitems"] = call("core_grades_get_gradeitems", {"courseid": course}, None)
    out = normalise(out, made)
    if isinstance(out["gradeitems"].get("gradeItems"), list):
        # The table's physical order: on a site where rows were deleted PostgreSQL writes a new row version
        # wherever there is room, so the order differs from run to run there; compared as a set.
        out["gradeitems"]["gradeItems"].sort(key=lambda item: str(item["id"]))
    return out


def normalise(value: Any, made: dict[str, Any]) -> Any:
    """Ids as the names the scenario gave them, the prefix as "<prefix>", the times the scenario did not fix
    as "<now>": what is left is the same on any site and in any run."""
    names = {
        "courseid": {made["course"]: "<course>"},
        "userid": {uid: f"<{name}>" for name, uid in made["users"].items()},
        "id": {iid: f"<item:{key}>" for key, iid in made["items"].items()},
        "categoryid": {made["categoryid"]: "<category>"},
        "cmid": {made["cmid"]: "<cm>"},
    }

    def walk(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            if "exception" in node:
                return {k: node.get(k) for k in ("exception", "errorcode", "message")}
            # an item's instance is the assignment's id (mod) or the course category's (course total)
            instance = {made["assign"]: "<assign>"} if node.get("itemtype") == "mod" else \
                {made["categoryid"]: "<category>"}
            return {k: instance.get(v, v) if k == "iteminstance" else walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if key == "id" and isinstance(node, str) and node.isdigit():
            node = int(node)  # core_grades_get_gradeitems: ids as strings
        if key in names and isinstance(node, int) and not isinstance(node, bool) and node in names[key]:
            return names[key][node]
        if key in ("gradedategraded", "gradedatesubmitted", "timecompleted") and isinstance(node, int) and \
                made["started"] <= node <= made["finished"]:
            return "<now>"
        if isinstance(node, str):
            return node.replace(made["prefix"], "<prefix>")
        return node
    return walk(value)


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where two answers differ, one line each; a bool is never equal to 0/1 here (Python's == says it is),
    while 40 and 40.0 are the same number (PHP's JSON writes a float without its .0)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = [f"{path}/{k}: missing (expected {expected[k]!r})" for k in expected if k not in actual]
        out += [f"{path}/{k}: unexpected {actual[k]!r}" for k in actual if k not in expected]
        for k in expected:
            if k in actual:
                out += differences(expected[k], actual[k], f"{path}/{k}")
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [line for i, (e, a) in enumerate(zip(expected, actual, strict=True))
                for line in differences(e, a, f"{path}[{i}]")]
    if expected != actual or isinstance(expected, bool) != isinstance(actual, bool):
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []


def against_real(scenario: Any, real: Callable[[str], Call], record: str) -> list[str]:
    """A contract test's comparison (this module's and completion_report_scenario's): the scenario made on the
    shared real site under a fresh prefix (deleted after, unless BUFSYNC_TEST_MOODLE_KEEP), and on a sandbox;
    every answer of the real Moodle against the sandbox's and against the recording (the environment variable
    `record` re-records it first). The lines of every difference."""
    from tests.integration.reconcile.test_trust_real import run_tag
    prefix = run_tag()
    try:
        made = scenario.real_scenario(prefix)
        answers = scenario.observe(real(prefix), made)
    finally:
        if not os.environ.get("BUFSYNC_TEST_MOODLE_KEEP"):
            scenario.real_delete(prefix)
    sandbox = sandbox_answers(scenario, prefix)
    if os.environ.get(record):  # after a deliberate change of the scenario
        scenario.RECORDED.write_text(json.dumps(answers, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    problems = [f"sandbox {answer}{line}" for answer in scenario.ANSWERS
                for line in differences(answers[answer], sandbox[answer])]
    return problems + [f"recording {line}" for line in differences(scenario.recorded(), answers)]


def sandbox_answers(scenario: Any, prefix: str) -> dict[str, Any]:
    """What a fresh sandbox (debug off, as the recording) answers to a scenario's observations."""
    from bufsync.sandbox.moodle.site import SiteConfig
    site = Site(SiteConfig())
    try:
        made = scenario.sandbox_scenario(site, prefix)
        answers: dict[str, Any] = scenario.observe(scenario.sandbox_call(site, made), made)
        return answers
    finally:
        site.close()
