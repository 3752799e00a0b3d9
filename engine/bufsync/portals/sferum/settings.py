"""The Сферум settings (`portals.sferum` in bufsync.yaml); docs/portals/sferum.md says what each token is for."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from bufsync.portals.settings import PortalSettings
from bufsync.validation import StrictModel, http_url

ChatKind = Literal["groups", "departments", "processes", "adhoc"]
CHAT_KINDS: tuple[ChatKind, ...] = ("groups", "departments", "processes", "adhoc")


class Titles(StrictModel):
    """Chat title templates (str.format); a changed title renames the chat."""

    groups: str = Field("{group_name}", description="an academic group's chat: {group_code}, {group_name}")
    departments: str = Field("{department_name}", description="a department's chat: {department_code}, "
                                                              "{department_name}")
    processes: str = Field("{group_name}: {course_name}", description="a subject chat: {process_id}, "
                           "{group_code}, {group_name}, {course_code}, {course_name}, {teacher_name}")
    adhoc: str = Field("{title}", description="a chat declared in buf_chat_members: {chat_code}, {title}")


class Lessons(StrictModel):
    """Online lessons of buf_lessons as VK calls."""

    enabled: bool = Field(True, description="start and finish calls for the online lessons of buf_lessons")
    start_before: int = Field(10, ge=0, le=240, description="minutes before a lesson begins that its call starts")
    finish_after: int = Field(15, ge=0, le=240, description="minutes after a lesson ends that its call is finished")
    post_link: bool = Field(True, description="post the join link into the lesson's subject chat")


class SferumSettings(PortalSettings):
    """VK Сферум through the VK API: chats kept in step with the contingent, and online lessons as calls."""

    url: str = Field("https://api.vk.com", description="VK API base (https://api.vk.com; the sandbox's for a trial)")
    version: str = Field("5.199", pattern=r"^5\.\d+$", description="VK API version sent as v")
    user_token: SecretStr | None = Field(
        None, description="the organiser's token: a staff member's Сферум profile, which creates the chats, adds and "
                          "removes members and starts calls (VK gives messages.addChatUser and calls.* to user "
                          "tokens only)")
    organiser_id: int | None = Field(None, gt=0, description="the VK id of user_token's owner; empty: asked of VK "
                                                             "(users.get) at each run")
    group_id: int | None = Field(None, gt=0, description="the community of group_token (optional)")
    group_token: SecretStr | None = Field(None, description="a community's token (optional; checked by bufsync check)")
    app_id: int | None = Field(None, gt=0, description="the VK application id (optional, for the record)")
    service_token: SecretStr | None = Field(None, description="the application's service token (optional; checked "
                                                              "by bufsync check)")
    rate_user: int = Field(3, ge=0, le=100, description="requests a second on a user token (VK: 3; 0: no limit)")
    rate_group: int = Field(20, ge=0, le=100, description="requests a second on a community token (VK: 20)")
    execute: bool = Field(True, description="bundle up to 25 calls in one `execute` request")
    chats: list[ChatKind] = Field(
        default_factory=lambda: list(CHAT_KINDS), description="which chats bufsync keeps: groups (an academic "
        "group's studying students), departments (a department's working staff), processes (a learning process's "
        "students and teacher: the subject chat), adhoc (chats declared in buf_chat_members)")
    titles: Titles = Field(default_factory=Titles)
    remove: Literal["added", "contingent", "all"] = Field(
        "added", description="whom a membership run may remove when they should not be there: added — only people "
                             "bufsync added; contingent — also people the buffer knows (buf_users.vk_id) who joined "
                             "otherwise; all — anyone but the organiser and the chat's admins")
    max_members: int = Field(250, ge=2, le=5000, description="members a chat may hold (the organiser included)")
    lessons: Lessons = Field(default_factory=Lessons)

    _http_url = field_validator("url")(classmethod(lambda cls, value: http_url(value)))
