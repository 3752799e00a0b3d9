"""Replays the recorded Moodle exchanges against a server (the sandbox or a real Moodle).

Exchanges run in recorded order (later ones depend on the state earlier ones left). Each
response is compared after normalising only ids-free volatile values: timestamps, the
site's URL and the private access key; everything else must be identical.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

HERE = Path(__file__).resolve().parent / "moodle-ws"
TOPICS = ["protocol", "users", "categories", "courses", "enrolments", "cohorts", "groups", "grades", "completion"]
RECORDED_URL = "http://127.0.0.1:8081"
EXPIRED_TOKEN = "deadbeefdeadbeefdeadbeefdeadbeef"
_TS_RANGE = (1_700_000_000, 1_999_999_999)


# Steps the lab took by hand that the recording states only in an exchange's note, in setup_steps' shape.
NOTED_STEPS: dict[str, list[dict[str, Any]]] = {
    "enrolments": [{"name": "setup_mail_broken_for_one_call", "before_exchange": "mail_failure_after_commit",
                    "note": "the exchange's note: no sendmail and $CFG->noemailever off for this one call"}],
}


def load(topic: str) -> dict[str, Any]:
    return json.loads((HERE / f"{topic}.json").read_text(encoding="utf-8"))


@dataclass
class Outcome:
    topic: str
    name: str
    expected: dict[str, Any]
    actual: dict[str, Any] | None = None
    skipped: str | None = None
    problems: list[str] = field(default_factory=list)


def normalise(value: Any, site_url: str) -> Any:
    if isinstance(value, dict):
        return {k: ("<key>" if k == "userprivateaccesskey" else normalise(v, site_url)) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, site_url) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int) and _TS_RANGE[0] <= value <= _TS_RANGE[1]:
        return "<ts>"
    if isinstance(value, str):
        value = value.replace(site_url, RECORDED_URL).replace(site_url.replace("/", "\\/"),
                                                               RECORDED_URL.replace("/", "\\/"))
        value = re.sub(r"(?<!\d)1[789]\d{8}(?!\d)", "<ts>", value)
        if value.isdigit() and _TS_RANGE[0] <= int(value) <= _TS_RANGE[1]:
            return "<ts>"
    return value


def _bulk_pairs(summary: dict[str, Any], prefix: str) -> list[tuple[str, str]]:
    """The max_input_vars calls: N users with the recorded field order (names as recorded)."""
    pairs = []
    for i in range(summary["users_sent"]):
        values = {"username": f"{prefix}{i:04d}", "password": "Lab#Pass2026", "firstname": "Bulk",
                  "lastname": f"User{i:04d}", "email": f"{prefix}{i:04d}@example.com", "auth": "manual",
                  "idnumber": f"BULK-{prefix[-1]}-{i:04d}", "city": "Bulk"}
        pairs += [(f"users[{i}][{f}]", values[f]) for f in summary["field_order"]]
    return pairs


def build_request(exchange: dict[str, Any], url: str, token: str) -> dict[str, Any]:
    """httpx keyword arguments reproducing the recorded request."""
    req = exchange["request"]
    endpoint = f"{url}/webservice/rest/server.php"
    fmt = req.get("moodlewsrestformat", "json")
    control: list[tuple[str, str]] = []
    token_note = req.get("wstoken")
    token_value: str | None = token
    if token_note:
        if token_note.startswith("(not sent)"):
            token_value = None
        elif token_note.startswith("ffff"):
            token_value = "f" * 32
        elif token_note.startswith("deadbeef"):
            token_value = EXPIRED_TOKEN
    if "params_summary" in req:
        summary = req["params_summary"]
        prefix = {"max_input_vars_optional_field_last": "bulko", "max_input_vars_required_field_cut": "bulkr",
                  "max_input_vars_token_last": "bulkt"}[exchange["name"]]
        params = _bulk_pairs(summary, prefix)
    else:
        params = [(k, v) for k, v in req.get("params") or []]
    if "json_body" in req:
        query = [(k, v) for k, v in req.get("query_string_fields") or []]
        if query:
            query = [("wstoken", token)] + query
        return {"method": "POST", "url": endpoint, "params": query,
                "content": json.dumps({"wstoken": token, **req["json_body"]}) if not query
                else json.dumps(req["json_body"]),
                "headers": {"Content-Type": "application/json"}}
    if req.get("wsfunction") is not None:
        control.append(("wsfunction", req["wsfunction"]))
    if not str(fmt).startswith("(not sent)"):
        control.append(("moodlewsrestformat", fmt))
    token_field = [("wstoken", token_value)] if token_value is not None else []
    if req.get("params_summary", {}).get("wstoken_position") == "last":
        fields = control + params + token_field
    else:
        fields = token_field + control + params
    if req.get("transport") or req.get("http_method") == "GET":
        return {"method": "GET", "url": endpoint, "params": fields}
    return {"method": "POST", "url": endpoint, "content": urlencode(fields).encode("ascii"),
            "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


def _alias(value: Any, aliases: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _alias(v, aliases) for k, v in value.items()}
    if isinstance(value, list):
        return [_alias(v, aliases) for v in value]
    if isinstance(value, str):
        for real, recorded in aliases.items():
            value = value.replace(real, recorded)
    return value


def compare(exchange: dict[str, Any], response: httpx.Response, site_url: str,
            expected_body: Any = None, aliases: dict[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    expected = exchange["response"]
    want_body = expected_body if expected_body is not None else expected.get("body")
    problems = []
    content_type = response.headers.get("content-type")
    if response.status_code != expected["http_status"]:
        problems.append(f"HTTP {response.status_code}, recorded {expected['http_status']}")
    if content_type != expected["content_type"]:
        problems.append(f"content type {content_type!r}, recorded {expected['content_type']!r}")
    if "json" in (content_type or ""):
        body: Any = response.json()
    else:
        body = {"raw": response.text}
    if aliases:
        body = _alias(body, aliases)
    actual = {"status": response.status_code, "content_type": content_type, "body": body}
    if "body_summary" in expected:
        summary = expected["body_summary"]
        if isinstance(body, list):
            got = {"users_returned": len(body), "first": body[0] if body else None, "last": body[-1] if body else None}
            if normalise(got, site_url) != normalise(summary, site_url):
                problems.append(f"summary {got}, recorded {summary}")
        elif normalise(body, site_url) != normalise(want_body, site_url) and want_body is not None:
            problems.append(f"body {body}, recorded {want_body}")
        elif want_body is None and isinstance(body, dict) and "exception" in body:
            problems.append(f"error {body}, recorded a list: {summary}")
        return actual, problems
    if normalise(body, site_url) != normalise(want_body, site_url):
        problems.append(f"body differs:\n  got      {json.dumps(normalise(body, site_url), ensure_ascii=False)[:1500]}"
                        f"\n  recorded {json.dumps(normalise(want_body, site_url), ensure_ascii=False)[:1500]}")
    if "body_raw" in expected and response.text != expected["body_raw"].replace(RECORDED_URL, site_url):
        if normalise(response.text, site_url) != normalise(expected["body_raw"], site_url):
            problems.append(f"raw body {response.text[:300]!r}, recorded {expected['body_raw'][:300]!r}")
    return actual, problems


def replay(url: str, token: str, topics: list[str], setup: Callable[[dict[str, Any]], str | None],
           debug_bodies: dict[str, Any] | None = None,
           available: Callable[[str], bool] = lambda name: True,
           aliases: dict[str, str] | None = None) -> list[Outcome]:
    """Run every exchange of the topics in recorded order (max_input_vars ones last)."""
    plan: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = []
    deferred = []
    for topic in topics:
        data = load(topic)
        steps = (data.get("setup_steps") or []) + NOTED_STEPS.get(topic, [])
        for exchange in data["exchanges"]:
            before = [s for s in steps if s.get("before_exchange") == exchange["name"]]
            item = (topic, exchange, before)
            (deferred if exchange["name"].startswith("max_input_vars_") else plan).append(item)
    outcomes = []
    blocked: str | None = None
    with httpx.Client(timeout=60) as client:
        for topic, exchange, before in plan + deferred:
            outcome = Outcome(topic, exchange["name"], exchange["response"])
            for step in before:
                reason = setup(step)
                if reason:
                    blocked = reason
            if blocked and topic in ("grades", "completion", "enrolments") and _needs_setup(topic, exchange, blocked):
                outcome.skipped = blocked
                outcomes.append(outcome)
                continue
            function = exchange["request"].get("wsfunction")
            if function and not available(function):
                outcome.skipped = f"{function} is not available on this server"
                outcomes.append(outcome)
                continue
            response = client.request(**build_request(exchange, url, token))
            key = f"{topic}/{exchange['name']}"
            expected_body = debug_bodies.get(key) if debug_bodies else None
            outcome.actual, outcome.problems = compare(exchange, response, url, expected_body, aliases)
            outcomes.append(outcome)
    return outcomes


def _needs_setup(topic: str, exchange: dict[str, Any], blocked: str) -> bool:
    return blocked.startswith(topic + ":")


def debug_bodies() -> dict[str, Any]:
    data = json.loads((HERE / "errors-debug.json").read_text(encoding="utf-8"))
    return {e["name"]: e["response"]["body"] for e in data["exchanges"]}


def error_names() -> set[str]:
    data = json.loads((HERE / "errors.json").read_text(encoding="utf-8"))
    return {e["name"] for e in data["exchanges"]}
