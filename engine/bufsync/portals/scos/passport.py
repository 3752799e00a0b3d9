"""A Moodle course as a СЦОС course passport, or the reasons it cannot be one (in Russian, for the site).

Each passport field comes from the course's custom field `scos_<field>` when the site has one,
else from `scos.passport.<field>` in bufsync.yaml; title, description, dates, image and teachers
come from the course itself.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

# fields the portal requires (shared/portals/scos.md, [2+]); business_version is added when sent
REQUIRED = ("title", "description", "content", "results", "external_url", "institution", "started_at", "image",
            "competences", "requirements", "direction", "duration", "cert", "teachers", "credits")
LIST_FIELDS = ("requirements", "direction")
INT_FIELDS = ("lectures", "hours", "hours_per_week", "visitors")
_TAGS = re.compile(r"<[^>]+>")


@dataclass
class Passport:
    fields: dict[str, Any] | None
    problems: list[str]
    cert: bool = False

    @property
    def digest(self) -> str:
        """md5 of what the portal would store: a changed digest is a new version to send."""
        return hashlib.md5(json.dumps(self.fields, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def custom_fields(course: dict[str, Any]) -> dict[str, Any]:
    return {f.get("shortname"): f.get("valueraw") for f in course.get("customfields") or []}


def _plain(text: str | None) -> str:
    return re.sub(r"\s+", " ", html.unescape(_TAGS.sub(" ", text or ""))).strip()


def _date(timestamp: int | None, zone: ZoneInfo) -> str | None:
    return datetime.fromtimestamp(timestamp, zone).date().isoformat() if timestamp else None


def _split(value: Any, separators: str = "\n;") -> list[str]:
    """A list field from a list, or from text with one item per line (or per separator)."""
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = html.unescape(re.sub(r"<br\s*/?>|</p>", "\n", str(value or ""), flags=re.I))
    return [part.strip() for part in re.split(f"[{re.escape(separators)}]", _TAGS.sub("", text)) if part.strip()]


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "да")


def build(course: dict[str, Any], teachers: list[dict[str, Any]], *, defaults: dict[str, Any], institution: str | None,
          moodle_url: str, session_id: str, zone: ZoneInfo) -> Passport:
    custom = custom_fields(course)

    def pick(name: str) -> Any:
        value = custom.get(f"scos_{name}")
        return value if value not in (None, "") else defaults.get(name)

    fields: dict[str, Any] = {
        "title": course.get("fullname"),
        "description": _plain(pick("description")) or _plain(course.get("summary")),
        "external_url": f"{moodle_url}/course/view.php?id={course['id']}",
        "institution": institution,
        "started_at": _date(course.get("startdate"), zone),
        "image": pick("image") or course.get("courseimage"),
        "sessionid": session_id,
        "language": pick("language") or "ru",
    }
    for name in ("content", "results", "competences", "promo_url", "assessment_description", "estimation_tools"):
        value = pick(name)
        if value not in (None, ""):
            fields[name] = _plain(value) if name != "competences" else "\n".join(_split(value, "\n"))
    for name in LIST_FIELDS:
        value = pick(name)
        if value not in (None, ""):
            fields[name] = _split(value, "\n;," if name == "direction" else "\n;")
    for name in INT_FIELDS:
        value = pick(name)
        if value not in (None, ""):
            try:
                fields[name] = int(value)
            except (TypeError, ValueError):
                pass  # reported below as a wrong value
    credits = pick("credits")
    problems: list[str] = []
    try:
        fields["credits"] = float(credits) if credits not in (None, "") else None
        if fields["credits"] is not None and fields["credits"].is_integer():
            fields["credits"] = int(fields["credits"])
    except (TypeError, ValueError):
        problems.append(f"поле паспорта «credits» должно быть числом, а не «{credits}»")
    cert = _truthy(pick("cert"))
    fields["cert"] = "true" if cert else "false"
    finished = _date(course.get("enddate"), zone)
    if finished:
        fields["finished_at"] = finished
    weeks = pick("duration_weeks")
    if weeks in (None, "") and course.get("startdate") and course.get("enddate"):
        weeks = max(1, math.ceil((course["enddate"] - course["startdate"]) / (7 * 86400)))
    if weeks not in (None, ""):
        fields["duration"] = {"code": "week", "value": int(weeks)}
    fields["teachers"] = [{"display_name": t.get("fullname"), "image": t.get("profileimageurl") or ""}
                          for t in teachers] or defaults.get("teachers")
    for name in REQUIRED:
        if fields.get(name) in (None, "", []):
            problems.append(_missing(name))
    fields = {k: v for k, v in fields.items() if v not in (None, "", [])}
    return Passport(None if problems else fields, problems, cert)


def promises_certificate(course: dict[str, Any], defaults: dict[str, Any]) -> bool:
    value = custom_fields(course).get("scos_cert")
    return _truthy(value if value not in (None, "") else defaults.get("cert"))


def _missing(name: str) -> str:
    source = {
        "title": "полное название курса",
        "description": "описание курса (summary) или настраиваемое поле scos_description",
        "external_url": "адрес Moodle (moodle.url)",
        "institution": "scos.institution в bufsync.yaml (идентификатор правообладателя)",
        "started_at": "дату начала курса (startdate)",
        "image": "изображение курса или поле scos_image",
        "teachers": "преподавателя (роль editingteacher) в курсе или scos.passport.teachers",
        "duration": "даты начала и окончания курса или поле scos_duration_weeks",
    }.get(name, f"настраиваемое поле курса scos_{name} или scos.passport.{name} в bufsync.yaml")
    return f"не заполнено поле паспорта СЦОС «{name}»: задайте {source}"
