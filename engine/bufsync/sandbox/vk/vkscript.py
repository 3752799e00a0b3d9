"""The small part of VKScript the sandbox runs in `execute`, parsed without eval.

What a batching client sends: `return API.a.b({...});` or `return [API.a.b({...}), API.c.d({...}), ...];`,
each argument a JSON object (or nothing: `API.a.b()`). Anything else (variables, loops, `Args`, arithmetic)
is refused with error 12 "Unable to compile code", saying that the sandbox does not run it: a client that
needs more of VKScript learns it here, not from the real VK after deployment.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bufsync.sandbox.vk.errors import ApiError

_NAME = re.compile(r"API\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_SPACE = re.compile(r"\s*")
_DECODER = json.JSONDecoder()
SUBSET = "the sandbox runs only `return API.x.y({...});` or `return [API.x.y({...}), ...];`"


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Program:
    calls: list[Call]
    many: bool  # `return [...]`: the answer is a list even of one call


class _Scanner:
    def __init__(self, code: str) -> None:
        self.code = code
        self.pos = 0

    def space(self) -> None:
        match = _SPACE.match(self.code, self.pos)
        assert match is not None  # \s* always matches
        self.pos = match.end()

    def take(self, literal: str) -> bool:
        self.space()
        if self.code.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def expect(self, literal: str) -> None:
        if not self.take(literal):
            raise self.error(f"expected {literal!r}")

    def error(self, what: str) -> ApiError:
        return ApiError(12, f"{what} at position {self.pos}; {SUBSET}")

    def call(self) -> Call:
        self.space()
        match = _NAME.match(self.code, self.pos)
        if match is None:
            raise self.error("expected API.<section>.<method>")
        self.pos = match.end()
        self.expect("(")
        args: dict[str, Any] = {}
        if not self.take(")"):
            self.space()
            try:
                value, self.pos = _DECODER.raw_decode(self.code, self.pos)
            except ValueError:
                raise self.error("the argument must be a JSON object") from None
            if not isinstance(value, dict):
                raise self.error("the argument must be a JSON object")
            args = value
            self.expect(")")
        return Call(match.group(1), args)


def parse(code: str) -> Program:
    """The calls of `code`, in order; ApiError 12 for anything outside the subset."""
    scanner = _Scanner(code)
    scanner.expect("return")
    if scanner.take("["):
        calls: list[Call] = []
        if not scanner.take("]"):
            calls.append(scanner.call())
            while scanner.take(","):
                calls.append(scanner.call())
            scanner.expect("]")
        program = Program(calls, many=True)
    else:
        program = Program([scanner.call()], many=False)
    scanner.take(";")
    scanner.space()
    if scanner.pos != len(code):
        raise scanner.error("unexpected text after the return statement")
    return program


def param_value(value: Any) -> str | None:
    """An argument as the form field a client would have sent: lists comma-joined, booleans 1/0."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(str(param_value(item) or "") for item in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
