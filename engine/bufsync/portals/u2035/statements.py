"""A fact as an xAPI 1.0.3 statement in the profile the notes describe (docs/portals/u2035.md): the learner as a
UNTI account, the project's verbs and context extensions, the course as the parent activity. Built once, when the
fact is queued: the queue keeps the body, so a resend is byte for byte the same statement under the same id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bufsync.portals.u2035.footprint import Fact
from bufsync.portals.u2035.settings import U2035Settings

PORTAL = "u2035"
VERB_NAMES = {
    "registered": "записался", "completed": "завершил", "scored": "получил оценку", "passed": "сдал",
    "failed": "не сдал", "submit": "отправил ответ", "experienced": "ознакомился",
}


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as xAPI wants it."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def actor(settings: U2035Settings, unti_id: str) -> dict[str, Any]:
    return {"objectType": "Agent", "account": {"homePage": settings.actor.home_page, "name": unti_id}}


def verb(settings: U2035Settings, verb_id: str) -> dict[str, Any]:
    name = VERB_NAMES.get(verb_id.rstrip("/").rsplit("/", 1)[-1])
    return {"id": verb_id, **({"display": {settings.profile.language: name}} if name else {})}


def extensions(settings: U2035Settings, fact: Fact) -> dict[str, Any]:
    """The project's context extensions, their text values formatted with the fact's fields."""
    fields = {"project": settings.project, "course_id": fact.course["id"],
              "course_idnumber": fact.course.get("idnumber") or "", "course_shortname": fact.course.get("shortname")
              or "", "cmid": fact.cmid or ""}
    out: dict[str, Any] = {}
    for iri, value in settings.profile.extensions.items():
        out[iri] = value.format(**fields) if isinstance(value, str) else value
    return out


def build(settings: U2035Settings, fact: Fact, statement_id: str, occurred_at: datetime) -> dict[str, Any]:
    """The statement without attachments: a submission's files are referenced (fileUrl, sha2, length) when the
    dispatcher has them in S3."""
    context: dict[str, Any] = {"platform": "Moodle", "language": settings.profile.language}
    if fact.parent is not None:  # an activity's statement names its course; the course's own does not
        context["contextActivities"] = {"parent": [fact.parent]}
    found = extensions(settings, fact)
    if found:
        context["extensions"] = found
    statement: dict[str, Any] = {
        "id": statement_id,
        "actor": actor(settings, fact.unti_id),
        "verb": verb(settings, fact.verb),
        "object": fact.object,
        "context": context,
        "timestamp": timestamp(occurred_at),
        "version": "1.0.3",
    }
    if fact.result:
        statement["result"] = fact.result
    return statement


def attachment(file: dict[str, Any], stored: dict[str, Any], usage_type: str, language: str) -> dict[str, Any]:
    """A submitted file referenced by its S3 URL: xAPI needs sha2 and length even with a fileUrl. usage_type and
    language are those the statement was queued with, so a resend is the same body whatever the settings say now."""
    name = str(file.get("filename") or "file")
    return {"usageType": usage_type, "display": {language: name},
            "contentType": str(file.get("mimetype") or stored.get("content_type") or "application/octet-stream"),
            "length": int(stored["length"]), "sha2": stored["sha256"], "fileUrl": stored["url"]}
