"""Course completion read from a report builder custom report, made the same way on a real Moodle 4.5
(fixtures/completion_report_scenario.php and the shipped completion_report.php, Moodle's own PHP API) and on the sandbox
(its admin actions), and what core_reportbuilder_retrieve_report and tool_mobile_get_config answer there, with ids and
"now" replaced by names so that the two sides' answers compare whole.

The scenario: two courses "<prefix>-A" and "<prefix>-B" with self completion; ann completed both (A in summer time,
B in winter), bob completed A, cat is enrolled in both and only started A, dan completed A and then his enrolment was
suspended, eve completed A and is enrolled there twice (by hand and through the disabled self enrolment); reader, who
is in no course, reads the report from America/New_York (the site is in Europe/London).
Two reports: bufsync's own (completion_report.php: uniquerows, course and person ID numbers sorted, completed students
only, reader in its audience) with one condition more, course ID number starts with "<prefix>-", since on a shared
site it would list every course; and "<prefix> all columns": one row per enrolment, every column the sandbox has,
course short name ascending and login descending, only this prefix's courses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import bufsync.adapters.moodle
from bufsync.sandbox.moodle.site import Site
from tests.integration.contract.grades_scenario import MOODLE_DIR, Call, _sandbox_ws, real_call, sandbox_steps

REPORT_SCRIPT = Path(bufsync.adapters.moodle.__file__).resolve().parent / "php" / "completion_report.php"
PHP_SCRIPT = Path(__file__).resolve().parent / "fixtures" / "completion_report_scenario.php"
RECORDED = Path(__file__).resolve().parent / "fixtures" / "completion_report_scenario.json"

# The PHP script's constants (keep in step with it).
ANN_A, ANN_B, BOB_A, DAN_A, EVE_A = 1757116800, 1767274200, 1757156700, 1757199600, 1761440400
CAT_STARTED = 1757030400
PEOPLE = {"ann": ("Аннова", "Анна"), "bob": ("Бобров", "Борис"), "cat": ("Кошкина", "Катя"),
          "dan": ("Данилов", "Данила"), "eve": ("Евина", "Ева"), "reader": ("Читатель", "Сервис")}
COURSES = {"A": 'Первый курс "A&B"', "B": "Второй курс"}
READER_TIMEZONE = "America/New_York"
COMPLETIONS = [("A", "ann", ANN_A), ("B", "ann", ANN_B), ("A", "bob", BOB_A), ("A", "dan", DAN_A),
               ("A", "eve", EVE_A)]

# completion_report.php's report (keep in step with it), and the scenario's two reports as create_report takes them.
BUFSYNC_COLUMNS = ["course:idnumber", "user:idnumber", "completion:timecompleted"]
BUFSYNC_SORTING = ["course:idnumber", "user:idnumber"]
DATE_NOT_EMPTY, TEXT_STARTS_WITH = 1, 5
ALL_COLUMNS = ["course:shortname", "user:username", "course:fullname", "course:idnumber", "user:idnumber",
               "completion:completed", "completion:timecompleted"]

# What observe() answers, by name.
ANSWERS = ["config/locationsettings", "config/all-names", "config/unknown-section", "report/missing",
           *[f"report/page{page}-of-2" for page in range(4)], "report/all-rows", "report/perpage-0",
           "report/negative-page", "report/as-reader", "report/as-student", "all/all-rows", "all/as-reader"]


def recorded() -> dict[str, Any]:
    """What the real Moodle 4.5 answered (observe(), normalised), kept so the sandbox is held to it in CI."""
    return json.loads(RECORDED.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def idnumber(prefix: str, name: str) -> str:
    """The person's ID number: none for the reader, characters HTML escapes in eve's."""
    return {"reader": "", "eve": f"{prefix}-EVE<&>"}.get(name, f"{prefix}-{name.upper()}")


# --- the real Moodle ----------------------------------------------------------------------------------------

def _run(*command: str) -> str:
    """A PHP CLI script with the site's PHP settings (its php/ directory next to moodle/, as the lab has it)."""
    ini = MOODLE_DIR.parent / "php"
    env = dict(os.environ, PHP_INI_SCAN_DIR=os.environ.get("BUFSYNC_TEST_MOODLE_PHP_INI_SCAN_DIR", f":{ini}"),
               BUFSYNC_TEST_MOODLE_DIR=str(MOODLE_DIR))
    done = subprocess.run(["php", *command], cwd=MOODLE_DIR, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def _php(*args: str) -> Any:
    return json.loads(_run(str(PHP_SCRIPT), *args))


def real_scenario(prefix: str) -> dict[str, Any]:
    """The people and courses, then the report as the shipped script makes it (named under the prefix, the reader
    in its audience), then the scenario's condition and second report."""
    made: dict[str, Any] = _php("create", prefix)
    report = int(_run(str(REPORT_SCRIPT), f"--moodle={MOODLE_DIR}", f"--user={prefix}reader",
                      f"--name={prefix} bufsync: course completion"))
    made["reports"] = _php("scope", prefix, str(report))
    made["finished"] = int(time.time())  # the reports were made after the people
    return made


def real_delete(prefix: str) -> None:
    _php("delete", prefix)


def real_caller(url: str, token: str, prefix: str) -> Call:
    """The admin's calls over REST with the token; another user's through the script (it has no token)."""
    rest = real_call(url, token, prefix)

    def call(function: str, params: dict[str, Any], as_user: str | None = None) -> Any:
        if as_user is not None:
            return _php("call", prefix, as_user, function, json.dumps(params))
        return rest(function, params, None)
    return call


# --- the sandbox ----------------------------------------------------------------------------------------------

def sandbox_scenario(site: Site, prefix: str, clock: int = 1796000000) -> dict[str, Any]:
    """The PHP scripts' steps on the sandbox, in the same order; answers what they print."""
    ws, admin = sandbox_steps(site, clock)

    courses = {key: ws("core_course_create_courses", courses=[{
        "fullname": f"{prefix} {fullname}", "shortname": f"{prefix}-{key}", "idnumber": f"{prefix}-{key}",
        "categoryid": 1, "enablecompletion": 1}])[0]["id"] for key, fullname in COURSES.items()}
    users = {name: ws("core_user_create_users", users=[{
        "username": prefix + name, "password": "Lab#Pass2026", "firstname": first, "lastname": last,
        "email": f"{prefix}{name}@example.com", "idnumber": idnumber(prefix, name),
        **({"timezone": READER_TIMEZONE} if name == "reader" else {})}])[0]["id"]
        for name, (last, first) in PEOPLE.items()}
    ws("enrol_manual_enrol_users", enrolments=[
        {"roleid": 5, "userid": users[name], "courseid": courses["A"]} for name in ("ann", "bob", "cat", "dan", "eve")])
    ws("enrol_manual_enrol_users", enrolments=[
        {"roleid": 5, "userid": users[name], "courseid": courses["B"]} for name in ("ann", "bob", "cat")])
    admin("enrol_user", courseid=courses["A"], userid=users["eve"], enrol="self", roleid=5)
    for courseid in courses.values():
        admin("set_completion_criteria", courseid=courseid, criteria=[{"type": "self"}])
    for key, name, when in COMPLETIONS:
        admin("mark_completion", courseid=courses[key], userid=users[name], criteria=["self"], timecompleted=when)
        admin("mark_completion", courseid=courses[key], userid=users[name], complete_course=True, timecompleted=when)
    admin("mark_completion", courseid=courses["A"], userid=users["cat"], criteria=["self"], timecompleted=CAT_STARTED)
    ws("enrol_manual_enrol_users", enrolments=[{"roleid": 5, "userid": users["dan"], "courseid": courses["A"],
                                                "suspend": 1}])
    scope = {"course:idnumber": {"operator": TEXT_STARTS_WITH, "value": f"{prefix}-"}}
    report = admin("create_report", name=f"{prefix} bufsync: course completion", columns=BUFSYNC_COLUMNS,
                   sorting=BUFSYNC_SORTING, uniquerows=True, audience_users=[users["reader"]],
                   conditions={"completion:timecompleted": {"operator": DATE_NOT_EMPTY}, **scope})["id"]
    everything = admin("create_report", name=f"{prefix} all columns", columns=ALL_COLUMNS, conditions=scope,
                       sorting=["course:shortname", {"column": "user:username", "direction": "desc"}])["id"]
    return {"prefix": prefix, "courses": courses, "users": users, "reports": {"report": report, "all": everything},
            "started": clock, "finished": clock}


def sandbox_call(site: Site, made: dict[str, Any]) -> Call:
    """The admin's calls with the site's token; a scenario user's with a token of their own."""
    tokens = {}
    for name in ("reader", "bob"):
        tokens[name] = f"{len(tokens) + 7}" * 32
        site.admin("add_token", {"token": tokens[name], "userid": made["users"][name]})

    def call(function: str, params: dict[str, Any], as_user: str | None = None) -> Any:
        return _sandbox_ws(site, tokens[as_user] if as_user else site.config.token, function, params)
    return call


# --- what both answer ----------------------------------------------------------------------------------------

def observe(call: Call, made: dict[str, Any]) -> dict[str, Any]:
    """Every answer the scenario is about, by name: the site's time zone and settings, bufsync's report page by
    page (2 rows a page), whole, with odd paging, as the reader (their zone) and as a student (refused), the report
    of every column, an id no report has."""
    report, everything = made["reports"]["report"], made["reports"]["all"]

    def retrieve(reportid: int, as_user: str | None = None, **paging: int) -> Any:
        return call("core_reportbuilder_retrieve_report", {"reportid": reportid, **paging}, as_user)

    settings = call("tool_mobile_get_config", {}, None)
    out: dict[str, Any] = {
        "config/locationsettings": call("tool_mobile_get_config", {"section": "locationsettings"}, None),
        "config/all-names": [s["name"] for s in settings["settings"]] if "settings" in settings else settings,
        "config/unknown-section": call("tool_mobile_get_config", {"section": "nosuchsection"}, None),
        "report/missing": retrieve(report + everything + 1000),
    }
    for page in range(4):
        out[f"report/page{page}-of-2"] = retrieve(report, page=page, perpage=2)
    out["report/all-rows"] = retrieve(report, page=0, perpage=100)
    out["report/perpage-0"] = retrieve(report, perpage=0)
    out["report/negative-page"] = retrieve(report, page=-1, perpage=-1)
    out["report/as-reader"] = retrieve(report, "reader", perpage=100)
    out["report/as-student"] = retrieve(report, "bob")
    out["all/all-rows"] = retrieve(everything, perpage=100)
    out["all/as-reader"] = retrieve(everything, "reader")
    return normalise(out, made)


_THEME_REV = re.compile(r"/theme/image\.php/boost/core/\d+/")
_SITE_URL = re.compile(r"^https?://[^/]+")


def normalise(value: Any, made: dict[str, Any]) -> Any:
    """Report ids as the scenario's names, the prefix as "<prefix>", times of "now" as "<now>", the site's address
    and theme revision as "<site>" and "<rev>": what is left is the same on any site and in any run."""
    reports = {made["reports"]["report"]: "<report>", made["reports"]["all"]: "<all>"}

    def walk(node: Any, key: str | None = None, parent: str | None = None) -> Any:
        if isinstance(node, dict):
            if "exception" in node:
                return {k: node.get(k) for k in ("exception", "errorcode", "message")}
            return {k: walk(v, k, key) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, None, key) for v in node]
        if parent == "details" and key == "id" and node in reports:
            return reports[node]
        if parent == "details" and key in ("timecreated", "timemodified") and isinstance(node, int) and \
                made["started"] <= node <= made["finished"]:
            return "<now>"
        if isinstance(node, str):
            node = node.replace(made["prefix"], "<prefix>")
            if key and key.startswith("profile"):
                node = _THEME_REV.sub("/theme/image.php/boost/core/<rev>/", _SITE_URL.sub("<site>", node))
        return node
    return walk(value)
