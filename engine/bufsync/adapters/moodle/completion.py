"""Course completion read from Moodle, the two ways Moodle 4.5 answers it (issue 15's figures chose between them).

- Per student: core_completion_get_course_completion_status, one call for each student of each course (800
  students: 13.8 s with 4 in flight on the lab). It needs nothing made on the site.
- A report builder custom report (php/completion_report.php makes it once; core_reportbuilder_retrieve_report),
  every completed student of every course in one call a page of 10,000 (800 students: 0.11 s). Its times are
  text, to the minute, in the token user's language and time zone (userdate.py reads them back).

A course is complete at the latest of its criteria's completion times: that is the time Moodle's aggregation
stores (aggregate_completions), and the only one the per-student answer carries.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.errors import MoodleError
from bufsync.adapters.moodle.userdate import LANGUAGES, UnreadableDate, parse
from bufsync.errors import ConfigError

REPORT_PAGE = 10_000  # rows a call: 8,000 rows in 1.8 s on the lab
REPORT_SETTING = "moodle.grades.completion_report"
# the course tracks no completion for anybody: completion off for it, or no criteria set
UNTRACKED_COURSE = ("cannotviewreport", "nocriteriaset")


def completion_status(client: MoodleClient, courseid: int, userid: int) -> tuple[bool, datetime | None]:
    """Whether the student completed the course, and when (UTC; None if Moodle keeps no time for it). Raises
    MoodleError as Moodle does: UNTRACKED_COURSE codes for a course without completion, usernotenroled for a
    student it does not track."""
    status = client.course_completion(courseid, userid).get("completionstatus") or {}
    if not status.get("completed"):
        return False, None
    latest = max((int(c.get("timecompleted") or 0) for c in status.get("completions") or []), default=0)
    return True, datetime.fromtimestamp(latest, UTC) if latest else None


def completed_students(client: MoodleClient, courseid: int, userids: list[int]) -> dict[int, datetime | None]:
    """Per student: userid -> when each completed (None: Moodle keeps no time for it; those who did not are
    absent); nothing for a course that tracks no completion (one call tells). Several students in flight."""
    if not userids:
        return {}

    def one(userid: int) -> tuple[bool, datetime | None]:
        try:
            return completion_status(client, courseid, userid)
        except MoodleError as exc:
            if exc.errorcode in ("usernotenroled", "notenroled"):  # left since the grades were read
                return False, None
            raise
    try:
        first = one(userids[0])  # the first answer also tells a course that tracks no completion
    except MoodleError as exc:
        if exc.errorcode in UNTRACKED_COURSE:
            return {}
        raise
    answers = [first] + client.parallel(userids[1:], one)
    return {userid: moment for userid, (done, moment) in zip(userids, answers, strict=True) if done}


def course_completions(client: MoodleClient, courseid: int, userids: list[int]) -> dict[int, datetime]:
    """Per student: userid -> when each completed, for those Moodle keeps a time for (what buf_grades records)."""
    return {userid: moment for userid, moment in completed_students(client, courseid, userids).items()
            if moment is not None}


def reader_zone(client: MoodleClient, info: dict[str, Any]) -> ZoneInfo:
    """The time zone Moodle formats the token user's dates in (core_date::get_user_timezone): the site's forced
    zone, else the user's own, else the site's default."""
    settings = {s["name"]: str(s.get("value") or "") for s in
                client.call("tool_mobile_get_config", {"section": "locationsettings"}).get("settings") or []}
    forced = settings.get("forcetimezone")
    userid = int(info["userid"])
    user = client.get_users_by_field("id", [userid])
    if not (forced and forced != "99") and (not user or "timezone" not in user[0]):
        # Moodle always has a zone for a user ("99": the site's) and leaves it out only when it hides it (Site
        # administration > Users > Permissions > User policies > Hide user fields): the site's is no safe guess
        raise ConfigError(f"{REPORT_SETTING}: Moodle hides the time zone of the bufsync user (hidden user fields), "
                          "and the report's dates are in that zone: give the bufsync user "
                          "moodle/user:viewhiddendetails, take Timezone out of Hide user fields, or force one time "
                          "zone for the site (forcetimezone)")
    chosen = next((z for z in (forced, str(user[0].get("timezone") or "") if user else "",
                               settings.get("timezone")) if z and z != "99"), None)
    if chosen is None:
        raise ConfigError(f"{REPORT_SETTING}: the token user's dates are in the Moodle server's own time zone (the "
                          "site's and the user's are both 'server default', 99), which web services do not tell: set "
                          "the time zone of the bufsync user in Moodle (Edit profile → Timezone)")
    try:
        return ZoneInfo(chosen)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{REPORT_SETTING}: Moodle's time zone {chosen!r} is not one this machine knows "
                          "(tzdata)") from None


REPORT_FUNCTIONS = ("core_reportbuilder_retrieve_report", "tool_mobile_get_config")
# what php/completion_report.php makes, as the sandbox's admin action create_report takes it
REPORT_DEFINITION: dict[str, Any] = {
    "name": "bufsync: course completion", "source": "participants", "uniquerows": True,
    "columns": ["course:idnumber", "user:idnumber", "completion:timecompleted"],
    "sorting": ["course:idnumber", "user:idnumber"],
    "conditions": {"completion:timecompleted": {"operator": 1}},  # date::DATE_NOT_EMPTY
}


def _language(info: dict[str, Any]) -> str:
    lang = str(info.get("lang") or "")
    if lang.split("_")[0] not in LANGUAGES:
        raise ConfigError(f"{REPORT_SETTING}: the report's dates come in the token user's language {lang!r}; bufsync "
                          f"reads {', '.join(LANGUAGES)}: set the bufsync user's language in Moodle to one of them")
    return lang


def _page(client: MoodleClient, reportid: int, page: int, perpage: int) -> dict[str, Any]:
    """One page of the report, refused as a configuration error when it is not the report bufsync reads."""
    try:
        data: dict[str, Any] = client.call("core_reportbuilder_retrieve_report",
                                           {"reportid": reportid, "page": page, "perpage": perpage})["data"]
    except MoodleError as exc:
        if exc.errorcode in ("invalidrecord", "nopermissions", "errorreportview"):
            raise ConfigError(f"{REPORT_SETTING}: Moodle refused report {reportid} ({exc.errorcode}: {exc}); make "
                              "it with completion_report.php (--user gives the bufsync user the right to read "
                              "it)") from None
        raise
    if len(data.get("headers") or []) != 3:
        raise ConfigError(f"{REPORT_SETTING}: report {reportid} has the columns {data.get('headers')}; bufsync "
                          "reads three: course ID number, user ID number, time completed (completion_report.php "
                          "makes it so)")
    return data


def probe_report(client: MoodleClient, reportid: int) -> str:
    """`bufsync check`: the report answers, has the three columns, and its dates can be read (language, zone)."""
    info = client.site_info()
    lang = _language(info)
    zone = reader_zone(client, info)
    data = _page(client, reportid, 0, 1)
    for row in data.get("rows") or []:
        when = str(row["columns"][2] or "").strip()
        if when:
            _moment(when, zone, reportid)
    return (f"completion report {reportid}: {int(data.get('totalrowcount') or 0)} completed students, dates in "
            f"{lang}, time zone {zone.key}")


def _moment(text: str, zone: ZoneInfo, reportid: int) -> datetime:
    try:
        return parse(text, zone).astimezone(UTC)
    except UnreadableDate:
        raise ConfigError(f"{REPORT_SETTING}: report {reportid} gives the time completed as {text!r}, which is not "
                          "a date bufsync reads (the third column must be 'Time completed')") from None


def report_completions(client: MoodleClient, reportid: int) -> dict[tuple[str, str], datetime]:
    """(course idnumber, user idnumber) -> when completed (UTC), from the custom report completion_report.php makes:
    columns course idnumber, user idnumber, time completed; completed students only."""
    info = client.site_info()
    _language(info)
    zone = reader_zone(client, info)
    out: dict[tuple[str, str], datetime] = {}
    page = 0
    while True:
        data = _page(client, reportid, page, REPORT_PAGE)
        for row in data.get("rows") or []:
            # text cells come HTML-escaped (s()): an idnumber "X&Y" is "X&amp;Y"
            course, user, when = (html.unescape(str(v or "")).strip() for v in row["columns"])
            if course and user and when:  # no idnumber: no row 1C could match; no time: not completed
                out[(course, user)] = _moment(when, zone, reportid)
        page += 1
        if page * REPORT_PAGE >= int(data.get("totalrowcount") or 0):
            return out
