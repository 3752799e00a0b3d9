"""The СЦОС partner API v2 over httpx: the X-CN-UUID key, JSON in and out, errors by kind."""

from __future__ import annotations

import json
from typing import Any

import httpx

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


class ScosUnavailable(Exception):
    """5xx, a timeout or no connection: worth another try later."""


class ScosClient:
    def __init__(self, base_url: str, key: str, timeout: float = 30.0) -> None:
        register(key)
        self.base = base_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout, headers={"X-CN-UUID": key, "Accept": "application/json"})

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        try:
            response = self._client.request(method, f"{self.base}{path}", json=body, params=params)
        except httpx.HTTPError as exc:
            raise ScosUnavailable(f"{method} {path}: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise ScosUnavailable(f"{method} {path}: HTTP {response.status_code}")
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
        listing = self._call("GET", "/registry/courses", params={"partner_id": partner_id})
        for row in listing.get("results", []) if isinstance(listing, dict) else []:
            if row.get("external_url") == external_url:
                return str(row.get("global_id"))
        return None

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
