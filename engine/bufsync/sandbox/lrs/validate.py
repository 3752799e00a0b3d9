"""xAPI 1.0.3 statement checks and the normalisation Learning Locker applies before it compares statements.

Learning Locker (LearningLocker/xapi-service, storeStatements/) validates every statement of a batch before it
stores any; a statement that fails gets the whole request refused with 400 and a list of warnings naming the
path of each problem. Then it fills in defaults (objectType Agent/Activity, contextActivities wrapped in lists)
and hashes the parts the client controls: id, actor, verb, object, context, result, attachments and timestamp
as sent (postValidationSetup/setupPreHashStatement.ts). `stored`, `authority` and `version` are set by the LRS
after hashing, and a missing `timestamp` is defaulted to `stored` after hashing too: so a statement resent
without a timestamp matches itself, while the same instant written differently ("…00Z" vs "…00.000Z") does not.
The checks here are the ones a client can trip over; the spec has more (SubStatement rules, interaction
components, signed statements) that the sandbox does not model.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.IGNORECASE)
IRI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:[^\s]+$")
SHA2 = re.compile(r"^[0-9a-fA-F]{56}(?:[0-9a-fA-F]{8}(?:[0-9a-fA-F]{32}){0,2})?$")  # SHA-224/256/384/512 hex
DURATION = re.compile(r"^P(?!$)(\d+(?:\.\d+)?Y)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?W)?(\d+(?:\.\d+)?D)?"
                      r"(T(?=\d)(\d+(?:\.\d+)?H)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?S)?)?$")
STATEMENT_KEYS = {"id", "actor", "verb", "object", "result", "context", "timestamp", "stored", "authority", "version",
                  "attachments"}
HASHED_KEYS = ("id", "actor", "verb", "object", "context", "result", "attachments", "timestamp")
IFIS = ("mbox", "mbox_sha1sum", "openid", "account")
CONTEXT_ACTIVITY_KINDS = ("parent", "grouping", "category", "other")


def prepare(statement: Any) -> Any:
    """LL's pre-validation setup: nulls dropped (enableNullRemoval), one context activity wrapped in a list."""
    statement = _drop_nulls(statement)
    if isinstance(statement, dict) and isinstance(statement.get("context"), dict):
        activities = statement["context"].get("contextActivities")
        if isinstance(activities, dict):
            for kind in CONTEXT_ACTIVITY_KINDS:
                if isinstance(activities.get(kind), dict):
                    activities[kind] = [activities[kind]]
    return statement


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def check(statement: Any, where: str) -> list[str]:
    """The problems of one (prepared) statement, each as "Problem in '<path>': <why>"."""
    problems: list[str] = []

    def bad(path: str, why: str) -> None:
        problems.append(f"Problem in '{path}': {why}")

    if not isinstance(statement, dict):
        bad(where, "expected a statement object")
        return problems
    for key in statement:
        if key not in STATEMENT_KEYS:
            bad(f"{where}.{key}", "unknown property")
    if "id" in statement and not _uuid(statement["id"]):
        bad(f"{where}.id", "expected a UUID")
    for key in ("actor", "verb", "object"):
        if key not in statement:
            bad(f"{where}.{key}", f"expected '{key}' to be defined")
    if "actor" in statement:
        _actor(statement["actor"], f"{where}.actor", bad)
    if "verb" in statement:
        _verb(statement["verb"], f"{where}.verb", bad)
    if "object" in statement:
        _object(statement["object"], f"{where}.object", bad, sub=False)
    if "timestamp" in statement and not _timestamp(statement["timestamp"]):
        bad(f"{where}.timestamp", "expected an ISO 8601 timestamp")
    if "version" in statement and not (isinstance(statement["version"], str)
                                       and re.fullmatch(r"1\.0(\.\d+)?", statement["version"])):
        bad(f"{where}.version", "expected a 1.0.x version")
    if "result" in statement:
        _result(statement["result"], f"{where}.result", bad)
    if "context" in statement:
        _context(statement["context"], f"{where}.context", bad)
    if "attachments" in statement:
        _attachments(statement["attachments"], f"{where}.attachments", bad)
    return problems


Bad = Any  # Callable[[str, str], None]


def _uuid(value: Any) -> bool:
    return isinstance(value, str) and bool(UUID.match(value))


def _iri(value: Any) -> bool:
    return isinstance(value, str) and bool(IRI.match(value))


def _timestamp(value: Any) -> bool:
    if not isinstance(value, str) or not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d", value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _language_map(value: Any, path: str, bad: Bad) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        bad(path, "expected a language map (language tag -> string)")


def _actor(actor: Any, path: str, bad: Bad, allow_group: bool = True) -> None:
    if not isinstance(actor, dict):
        bad(path, "expected an Agent or a Group")
        return
    kind = actor.get("objectType", "Agent")
    if kind == "Group" and allow_group:
        members = actor.get("member")
        ifis = [k for k in IFIS if k in actor]
        if members is None and not ifis:
            bad(path, "an anonymous Group needs 'member'")
        if members is not None:
            if not isinstance(members, list):
                bad(f"{path}.member", "expected a list of Agents")
            else:
                for number, member in enumerate(members):
                    _actor(member, f"{path}.member.{number}", bad, allow_group=False)
        if len(ifis) > 1:
            bad(path, f"expected one inverse functional identifier, got {', '.join(ifis)}")
        elif ifis:
            _ifi(actor, ifis[0], path, bad)
        return
    if kind != "Agent":
        bad(f"{path}.objectType", "expected 'Agent'" + (" or 'Group'" if allow_group else ""))
        return
    ifis = [k for k in IFIS if k in actor]
    if len(ifis) != 1:
        bad(path, "expected exactly one of mbox, mbox_sha1sum, openid, account")
        return
    _ifi(actor, ifis[0], path, bad)


def _ifi(actor: dict[str, Any], ifi: str, path: str, bad: Bad) -> None:
    value = actor[ifi]
    if ifi == "mbox" and not (isinstance(value, str) and value.startswith("mailto:")):
        bad(f"{path}.mbox", "expected a mailto: IRI")
    elif ifi == "mbox_sha1sum" and not (isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]{40}", value)):
        bad(f"{path}.mbox_sha1sum", "expected a SHA-1 hex digest")
    elif ifi == "openid" and not _iri(value):
        bad(f"{path}.openid", "expected an IRI")
    elif ifi == "account":
        if not isinstance(value, dict):
            bad(f"{path}.account", "expected an object with homePage and name")
            return
        if not _iri(value.get("homePage")):
            bad(f"{path}.account.homePage", "expected an IRL")
        if not isinstance(value.get("name"), str):
            bad(f"{path}.account.name", "expected a string")


def _verb(verb: Any, path: str, bad: Bad) -> None:
    if not isinstance(verb, dict):
        bad(path, "expected a verb object")
        return
    if not _iri(verb.get("id")):
        bad(f"{path}.id", "expected an IRI")
    if "display" in verb:
        _language_map(verb["display"], f"{path}.display", bad)


def _activity(activity: Any, path: str, bad: Bad) -> None:
    if not isinstance(activity, dict):
        bad(path, "expected an Activity")
        return
    if activity.get("objectType", "Activity") != "Activity":
        bad(f"{path}.objectType", "expected 'Activity'")
    if not _iri(activity.get("id")):
        bad(f"{path}.id", "expected an IRI")
    definition = activity.get("definition")
    if definition is not None:
        if not isinstance(definition, dict):
            bad(f"{path}.definition", "expected an object")
            return
        for key in ("name", "description"):
            if key in definition:
                _language_map(definition[key], f"{path}.definition.{key}", bad)
        for key in ("type", "moreInfo"):
            if key in definition and not _iri(definition[key]):
                bad(f"{path}.definition.{key}", "expected an IRI")


def _object(value: Any, path: str, bad: Bad, sub: bool) -> None:
    if not isinstance(value, dict):
        bad(path, "expected an Activity, Agent, Group, StatementRef or SubStatement")
        return
    kind = value.get("objectType", "Activity")
    if kind == "Activity":
        _activity(value, path, bad)
    elif kind in ("Agent", "Group"):
        _actor(value, path, bad)
    elif kind == "StatementRef":
        if not _uuid(value.get("id")):
            bad(f"{path}.id", "expected a UUID")
    elif kind == "SubStatement" and not sub:
        for key in ("actor", "verb", "object"):
            if key not in value:
                bad(f"{path}.{key}", f"expected '{key}' to be defined")
        for key in ("id", "stored", "version", "authority"):
            if key in value:
                bad(f"{path}.{key}", "not allowed in a SubStatement")
        if "actor" in value:
            _actor(value["actor"], f"{path}.actor", bad)
        if "verb" in value:
            _verb(value["verb"], f"{path}.verb", bad)
        if "object" in value:
            _object(value["object"], f"{path}.object", bad, sub=True)
    else:
        bad(f"{path}.objectType", f"unexpected objectType {kind!r}")


def _result(result: Any, path: str, bad: Bad) -> None:
    if not isinstance(result, dict):
        bad(path, "expected an object")
        return
    score = result.get("score")
    if score is not None:
        if not isinstance(score, dict):
            bad(f"{path}.score", "expected an object")
        else:
            scaled = score.get("scaled")
            if scaled is not None and not (isinstance(scaled, int | float) and -1 <= scaled <= 1):
                bad(f"{path}.score.scaled", "expected a number from -1 to 1")
    for key in ("success", "completion"):
        if key in result and not isinstance(result[key], bool):
            bad(f"{path}.{key}", "expected a boolean")
    if "duration" in result and not (isinstance(result["duration"], str) and DURATION.match(result["duration"])):
        bad(f"{path}.duration", "expected an ISO 8601 duration")
    if "extensions" in result:
        _extensions(result["extensions"], f"{path}.extensions", bad)


def _extensions(value: Any, path: str, bad: Bad) -> None:
    if not isinstance(value, dict):
        bad(path, "expected an object keyed by IRIs")
        return
    for key in value:
        if not _iri(key):
            bad(f"{path}.{key}", "extension keys must be IRIs")


def _context(context: Any, path: str, bad: Bad) -> None:
    if not isinstance(context, dict):
        bad(path, "expected an object")
        return
    if "registration" in context and not _uuid(context["registration"]):
        bad(f"{path}.registration", "expected a UUID")
    if "instructor" in context:
        _actor(context["instructor"], f"{path}.instructor", bad)
    activities = context.get("contextActivities")
    if activities is not None:
        if not isinstance(activities, dict):
            bad(f"{path}.contextActivities", "expected an object")
        else:
            for kind, items in activities.items():
                where = f"{path}.contextActivities.{kind}"
                if kind not in CONTEXT_ACTIVITY_KINDS:
                    bad(where, "unknown property")
                elif not isinstance(items, list):
                    bad(where, "expected a list of Activities")
                else:
                    for number, item in enumerate(items):
                        _activity(item, f"{where}.{number}", bad)
    if "statement" in context and not (isinstance(context["statement"], dict)
                                       and context["statement"].get("objectType") == "StatementRef"
                                       and _uuid(context["statement"].get("id"))):
        bad(f"{path}.statement", "expected a StatementRef")
    if "extensions" in context:
        _extensions(context["extensions"], f"{path}.extensions", bad)


def _attachments(attachments: Any, path: str, bad: Bad) -> None:
    if not isinstance(attachments, list):
        bad(path, "expected a list of attachments")
        return
    for number, item in enumerate(attachments):
        where = f"{path}.{number}"
        if not isinstance(item, dict):
            bad(where, "expected an attachment object")
            continue
        for key in ("usageType", "display", "contentType", "length", "sha2"):
            if key not in item:
                bad(f"{where}.{key}", f"expected '{key}' to be defined")
        if "usageType" in item and not _iri(item["usageType"]):
            bad(f"{where}.usageType", "expected an IRI")
        if "display" in item:
            _language_map(item["display"], f"{where}.display", bad)
        if "description" in item:
            _language_map(item["description"], f"{where}.description", bad)
        if "contentType" in item and not (isinstance(item["contentType"], str) and "/" in item["contentType"]):
            bad(f"{where}.contentType", "expected an Internet Media Type")
        if "length" in item and not (isinstance(item["length"], int) and not isinstance(item["length"], bool)
                                     and item["length"] >= 0):
            bad(f"{where}.length", "expected a non-negative integer")
        if "sha2" in item and not (isinstance(item["sha2"], str) and SHA2.match(item["sha2"])):
            bad(f"{where}.sha2", "expected a SHA-2 hex digest")
        if "fileUrl" in item and not _iri(item["fileUrl"]):
            bad(f"{where}.fileUrl", "expected an IRL")


def with_object_types(statement: dict[str, Any]) -> dict[str, Any]:
    """LL's setupObjectTypes: the objectTypes a client may leave out, filled in (so leaving them out or writing
    them is the same statement)."""
    out = json.loads(json.dumps(statement))
    _typed_base(out)
    return out


def _typed_actor(actor: Any, default: str = "Agent") -> None:
    if isinstance(actor, dict):
        actor.setdefault("objectType", default)
        for member in actor.get("member") or []:
            _typed_actor(member)


def _typed_base(statement: dict[str, Any]) -> None:
    _typed_actor(statement.get("actor"))
    target = statement.get("object")
    if isinstance(target, dict):
        target.setdefault("objectType", "Activity")
        if target["objectType"] in ("Agent", "Group"):
            _typed_actor(target)
        elif target["objectType"] == "SubStatement":
            _typed_base(target)
    context = statement.get("context")
    if isinstance(context, dict):
        _typed_actor(context.get("instructor"))
        _typed_actor(context.get("team"), "Group")
        for items in (context.get("contextActivities") or {}).values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    item.setdefault("objectType", "Activity")


def fingerprint(statement: dict[str, Any]) -> str:
    """What LL compares to tell a resent statement from a different one under the same id: a hash of the parts
    the client controls, key order ignored (object-hash's unorderedObjects), list order kept."""
    hashed = {key: statement[key] for key in HASHED_KEYS if key in statement}
    return hashlib.sha1(json.dumps(hashed, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
