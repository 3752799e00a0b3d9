"""The СЦОС partner API v2 over httpx: the X-CN-UUID key, JSON in and out, errors by kind."""

from __future__ import annotations

import json
from typing import Any

import httpx

from bufsync import tls
from bufsync.secrets import register


class ScosRejected(Exception):
    """4xx: the portal rejected the data; sending it again cannot help."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body

    def json(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.body)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}


class ScosKeyRefused(ScosRejected):
    """401/403: the portal refused the key (X-CN-UUID), not the data: every call will fail the same way."""


class ScosUnavailable(Exception):
    """5xx, a timeout or no connection: worth another try later.

    maybe_sent: the request may have reached the portal and been done there, its answer lost (a read
    timeout, a connection closed mid-answer); False when it never left (no connection) or the portal
    answered with an error.
    """

    def __init__(self, message: str, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


# errors after which the request may have been received and done: only the answer is missing
_ANSWER_LOST = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


class ScosClient:
    def __init__(self, base_url: str, key: str, timeout: float = 30.0) -> None:
        register(key)
        self.base = base_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout, verify=tls.verify(),
                                    headers={"X-CN-UUID": key, "Accept": "application/json"})

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        try:
            response = self._client.request(method, f"{self.base}{path}", json=body, params=params)
        except httpx.HTTPError as exc:
            raise ScosUnavailable(f"{method} {path}: {type(exc).__name__}",
                                  maybe_sent=method != "GET" and isinstance(exc, _ANSWER_LOST)) from None
        if response.status_code >= 500:
            raise ScosUnavailable(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code in (401, 403):
            raise ScosKeyRefused(response.status_code, response.text)
        if response.status_code >= 400:
            raise ScosRejected(response.status_code, response.text)
        try:
            return response.json()
        except ValueError:
            return response.text

    def check(self) -> None:
        self._call("GET", "/connections/check")

    def publish(self, partner_id: str, passport: dict[str, Any]) -> str:
        return self._call("POST", "/registry/courses", {"partner_id": partner_id, "package": {"items": [passport]}}
                          )["course_id"]

    def update(self, partner_id: str, passport: dict[str, Any]) -> None:
        self._call("PUT", "/registry/courses", {"partner_id": partner_id, "package": {"items": [passport]}})

    def find_course(self, partner_id: str, external_url: str) -> str | None:
        """The portal id of this partner's course with that external_url, if the portal has one."""
        return self.courses_by_url(partner_id).get(external_url)

    def courses_by_url(self, partner_id: str) -> dict[str, str]:
        """external_url -> portal id of this partner's courses (GET /registry/courses, one call)."""
        listing = self._call("GET", "/registry/courses", params={"partner_id": partner_id})
        return {row["external_url"]: str(row.get("global_id"))
                for row in (listing.get("results", []) if isinstance(listing, dict) else [])
                if isinstance(row, dict) and row.get("external_url")}

    def course(self, course_id: str) -> dict[str, Any]:
        """GET /registry/courses/{id}: the passport the portal holds (with its business_version)."""
        found = self._call("GET", f"/registry/courses/{course_id}")
        return found if isinstance(found, dict) else {}

    def user_id(self, email: str) -> str | None:
        """GET /users/id?email=: the portal's user id, None when the portal knows no such e-mail (404)."""
        try:
            return str(self._call("GET", "/users/id", params={"email": email})["user_id"])
        except ScosRejected as exc:
            if exc.status == 404:
                return None
            raise

    def certificate(self, body: dict[str, Any]) -> Any:
        return self._call("POST", "/certificates", body)

    def moderation_status(self, course_id: str) -> str:
        return self._call("GET", "/registry/courses/moderation_status", params={"course_id": course_id})["status"]

    def set_status(self, course_id: str, status: str) -> str:
        return self._call("PUT", "/registry/courses/update_status",
                          params={"course_id": course_id, "new_status": status})["status"]

    def participation_add(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._call("POST", "/courses/participation", items)

    def participation_remove(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._call("DELETE", "/courses/participation", items)

    def results(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._call("POST", "/courses/results", items)

    def progress(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._call("POST", "/courses/results/progress", items)
