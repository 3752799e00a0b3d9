"""VK API errors as the API reports them: a code, VK's own message, and what the client sent.

The descriptions are those of VK's schema (`errors.json` in VKCOM/vk-api-schema, v5.199); the detail
after the colon imitates VK's style ("One of the parameters specified was missing or invalid: chat_id
is undefined"). Clients must act on `error_code`, never on the wording.
"""

from __future__ import annotations

from typing import Any

DESCRIPTIONS: dict[int, str] = {
    1: "Unknown error occurred",
    3: "Unknown method passed",
    5: "User authorization failed",
    6: "Too many requests per second",
    8: "Invalid request",
    9: "Flood control",
    10: "Internal server error",
    12: "Unable to compile code",
    13: "Runtime error occurred during code invocation",
    14: "Captcha needed",
    15: "Access denied",
    27: "Group authorization failed",
    28: "Application authorization failed",
    29: "Rate limit reached",
    100: "One of the parameters specified was missing or invalid",
    103: "Out of limits",
    104: "Not found",
    113: "Invalid user id",
    902: "Can't send messages to this user due to their privacy settings",
    914: "Message is too long",
    917: "You don't have access to this chat",
    919: "You can't see invite link for this chat",
    925: "You are not admin of this chat",
    927: "Chat does not exist",
    931: "You can't change invite link for this chat",
    935: "User not found in chat",
    936: "Contact not found",
    945: "Chat was disabled",
    946: "Chat not supported",
    1117: "Access token has expired",
}


class ApiError(Exception):
    """One VK API error; raised anywhere in a method, turned into the `error` object by the server."""

    def __init__(self, code: int, detail: str = "", **extra: Any) -> None:
        description = DESCRIPTIONS.get(code, f"Error {code}")
        self.code = code
        self.message = f"{description}: {detail}" if detail else description
        self.extra = extra  # captcha_sid, captcha_img: fields VK adds to some errors
        super().__init__(self.message)

    def body(self, request_params: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """The `error` object of VK's answer."""
        error: dict[str, Any] = {"error_code": self.code, "error_msg": self.message}
        error.update(self.extra)
        if request_params is not None:
            error["request_params"] = request_params
        return error


def missing(name: str) -> ApiError:
    return ApiError(100, f"{name} is undefined")


def invalid(name: str, why: str) -> ApiError:
    return ApiError(100, f"{name} {why}")
