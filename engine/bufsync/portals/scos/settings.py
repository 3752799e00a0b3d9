"""The СЦОС settings (`portals.scos` in bufsync.yaml; the older top-level `scos:` is read too)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from bufsync.portals.settings import PortalSettings
from bufsync.validation import http_url

SCOS_SCENARIOS = ("publish", "moderation", "update", "archive", "enrol", "unenrol", "results", "progress",
                  "certificates")


class ScosSettings(PortalSettings):
    """ГИС СЦОС (online.edu.ru): the partner API v2, and how Moodle data becomes a course passport."""

    url: str | None = Field(None, description="API base, e.g. https://online.edu.ru/api/v2 (test: test.online.edu.ru)")
    key: SecretStr | None = Field(None, description="platform access key (X-CN-UUID), issued by СЦОС support")
    partner_id: str | None = Field(None, description="platform id on the portal")
    institution: str | None = Field(None, description="rightholder (institution) id for the course passport")
    identity: Literal["esia_id", "email"] = Field(
        "esia_id", description="esia_id: buf_users.esia_id is the portal's user_id; "
                               "email: look the id up on the portal by the Moodle e-mail (GET /users/id)")
    scenarios: list[Literal[SCOS_SCENARIOS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(SCOS_SCENARIOS), description="which of the nine scenarios run")
    student_roles: list[str] = Field(default_factory=lambda: ["student"], description="roles that make a learner")
    teacher_roles: list[str] = Field(default_factory=lambda: ["editingteacher"],
                                     description="roles listed as the passport's teachers")
    passport: dict[str, Any] = Field(default_factory=dict,
                                     description="passport fields for courses without a scos_<field> custom field")
    parallel_calls: int = Field(4, ge=1, le=32, description="learner-data calls one dispatcher has in flight at once")

    _http_url = field_validator("url")(classmethod(lambda cls, value: http_url(value)))
