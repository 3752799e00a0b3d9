"""Moodle's parameter handling: PHP's form parsing (and max_input_vars), external_api's
validate_parameters, and clean_param for the PARAM_* types the emulated functions use.

Error texts (the debuginfo of invalid_parameter_exception) follow Moodle word for word,
because a debug-mode site shows them and clients learn from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bufsync.adapters.moodle.rules import (
    STANDARD_AUTH_PLUGINS,
    clean_notags,
    clean_text,
    clean_username,
    is_plugin_name,
    validate_email,
)
from bufsync.sandbox.moodle.errors import invalid_parameter

__all__ = ["clean_username", "validate_email"]

VALUE_REQUIRED, VALUE_OPTIONAL, VALUE_DEFAULT = 1, 2, 0
AUTH_PLUGINS = set(STANDARD_AUTH_PLUGINS)  # what the recorded site has installed (exists_auth_plugin)
LANGS = {"en"}
THEMES = {"boost", "classic"}


# --- PHP form parsing -------------------------------------------------------------------------

_KEY = re.compile(r"^([^\[]+)((?:\[[^\]]*\])*)")


def _php_key(part: str) -> int | str:
    """PHP turns decimal integer keys into ints ('07' stays a string)."""
    if re.fullmatch(r"-?(0|[1-9][0-9]*)", part):
        return int(part)
    return part


def parse_php_form(pairs: list[tuple[str, str]]) -> dict[Any, Any]:
    """`users[0][username]=x` -> {'users': {0: {'username': 'x'}}}, as PHP builds $_POST."""
    result: dict[Any, Any] = {}
    for name, value in pairs:
        match = _KEY.match(name)
        if not match:
            continue
        base = match.group(1).replace(".", "_").replace(" ", "_")
        parts = re.findall(r"\[([^\]]*)\]", match.group(2))
        if not parts:
            result[_php_key(base)] = value
            continue
        node = result
        key: Any = _php_key(base)
        for part in parts:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
            if part == "":
                ints = [k for k in node if isinstance(k, int)]
                key = (max(ints) + 1) if ints else 0
            else:
                key = _php_key(part)
        node[key] = value
    return result


def truncate_input_vars(pairs: list[tuple[str, str]], max_input_vars: int) -> list[tuple[str, str]]:
    """PHP silently keeps the first max_input_vars + 1 fields (measured on the recorded site)."""
    return pairs[: max_input_vars + 1]


# --- PHP comparisons and casts ------------------------------------------------------------------

_NUMERIC = re.compile(r"^[ \t\n\r\v\f]*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?[ \t\n\r\v\f]*$")
_LEADING_INT = re.compile(r"^[ \t\n\r\v\f]*([+-]?\d+)")


def is_numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and bool(_NUMERIC.match(value))


def php_int(value: Any) -> int:
    """(int)$value."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if value is None:
        return 0
    text = str(value)
    if _NUMERIC.match(text):
        try:
            return int(float(text)) if not re.fullmatch(r"\s*[+-]?\d+\s*", text) else int(text)
        except (ValueError, OverflowError):
            return 0
    match = _LEADING_INT.match(text)
    return int(match.group(1)) if match else 0


def php_str(value: Any) -> str:
    if value is True:
        return "1"
    if value is False or value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def loose_equal(a: Any, b: Any) -> bool:
    """PHP 8 `==` between a request string and a cleaned value."""
    if isinstance(a, str) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return float(a) == float(b) if is_numeric(a) else a == php_str(b)
    if isinstance(b, str) and isinstance(a, (int, float)) and not isinstance(a, bool):
        return loose_equal(b, a)
    if isinstance(a, str) and isinstance(b, str) and is_numeric(a) and is_numeric(b):
        return float(a) == float(b)
    return php_str(a) == php_str(b)


# --- clean_param -------------------------------------------------------------------------------

_COMPONENT = re.compile(r"^[a-z][a-z0-9]*(_[a-z][a-z0-9_]*)?[a-z0-9]+$")
_TIMEZONE = re.compile(r"^(([+-]?(0?[0-9](\.[5|0])?|1[0-3](\.0)?|1[0-2]\.5))|(99)|[A-Za-z0-9]+(/?[A-Za-z_-])+)$")


def clean_param(value: Any, kind: str) -> Any:
    if kind == "int":
        return php_int(value)
    if kind == "float":
        return float(value) if is_numeric(value) else 0.0
    if kind == "bool":
        text = php_str(value).lower()
        if text in ("on", "yes", "true"):
            return 1
        if text in ("off", "no", "false"):
            return 0
        return 0 if text in ("", "0") else 1
    text = php_str(value)
    if kind in ("raw", "clean"):
        return text
    if kind == "raw_trimmed":
        return text.strip()
    if kind == "notags":
        return clean_notags(text)  # PHP's strip_tags, so «Иван <b>» is refused and «a < b» passes
    if kind == "text":
        return clean_text(text)
    if kind == "cleanhtml":
        return text
    if kind == "username":
        return clean_username(text)
    if kind == "email":
        return text if validate_email(text) else ""
    if kind == "alphanumext":
        return re.sub(r"[^a-zA-Z0-9_-]", "", text)
    if kind == "alphanum":
        return re.sub(r"[^a-zA-Z0-9]", "", text)
    if kind == "alpha":
        return re.sub(r"[^a-zA-Z]", "", text)
    if kind == "alphaext":
        return re.sub(r"[^a-zA-Z/_-]", "", text)
    if kind == "safedir":
        return re.sub(r"[^a-zA-Z0-9_-]", "", text)
    if kind == "sequence":
        return re.sub(r"[^0-9,]", "", text)
    if kind in ("plugin", "area"):
        return text if is_plugin_name(text) else ""
    if kind == "component":
        return text if _COMPONENT.match(text) or re.fullmatch(r"[a-z][a-z0-9_]*", text) else ""
    if kind == "auth":  # PARAM_AUTH: a plugin name whose auth/<name>/auth.php exists
        return text if is_plugin_name(text) and text in AUTH_PLUGINS else ""
    if kind == "lang":
        return text if text in LANGS else ""
    if kind == "theme":
        return text if text in THEMES else ""
    if kind == "timezone":
        return text if _TIMEZONE.match(text.strip()) else "99"
    if kind == "capability":  # PARAM_CAPABILITY: a capability the site defines (here: one shaped like one)
        return text if re.fullmatch(r"[a-z0-9_]+/[a-z0-9_]+:[a-z0-9_]+", text) else ""
    if kind == "url":
        return text if re.match(r"^(https?://[^\s]+|/[^\s]*|)$", text) else ""
    raise ValueError(f"unknown PARAM type {kind}")


def validate_param(value: Any, kind: str, allownull: bool, debuginfo: str) -> Any:
    if value is None:
        if allownull:
            return None
        raise invalid_parameter(debuginfo)
    if isinstance(value, dict):
        raise invalid_parameter(debuginfo)
    cleaned = clean_param(value, kind)
    if kind == "float":
        if not is_numeric(value):
            raise invalid_parameter(debuginfo)
        return float(value)
    if php_str(value) != php_str(cleaned):
        raise invalid_parameter(debuginfo)
    return cleaned


# --- external_description ----------------------------------------------------------------------

@dataclass
class Value:
    type: str
    required: int = VALUE_REQUIRED
    default: Any = None
    allownull: bool = True


@dataclass
class Single:
    keys: dict[str, Any]
    required: int = VALUE_REQUIRED
    default: Any = None
    allownull: bool = True


@dataclass
class Multiple:
    content: Any
    required: int = VALUE_REQUIRED
    default: Any = field(default_factory=list)
    allownull: bool = True


def _php_print_r(value: Any) -> str:
    return php_str(value)


def validate_parameters(description: Any, params: Any) -> Any:
    """external_api::validate_parameters, including its nested error texts."""
    if isinstance(params, list):  # a PHP array written as a Python default
        params = dict(enumerate(params))
    if params is None and getattr(description, "allownull", True) and not isinstance(description, Value):
        return None
    if isinstance(description, Value):
        if isinstance(params, dict):
            raise invalid_parameter("Scalar type expected, array or object received.")
        if description.type == "bool" and (isinstance(params, bool) or params in (0, 1, "0", "1")):
            return bool(int(params))
        debuginfo = (f'Invalid external api parameter: the value is "{php_str(params)}", '
                     f'the server was expecting "{description.type}" type')
        return validate_param(params, description.type, description.allownull, debuginfo)
    if isinstance(description, Single):
        if not isinstance(params, dict):
            raise invalid_parameter(f"Only arrays accepted. The bad value is: '{_php_print_r(params)}'")
        remaining = dict(params)
        result: dict[str, Any] = {}
        for key, sub in description.keys.items():
            if key not in remaining:
                if sub.required == VALUE_REQUIRED:
                    raise invalid_parameter(f"Missing required key in single structure: {key}")
                if sub.required == VALUE_DEFAULT:
                    result[key] = _wrap(key, sub, sub.default)
            else:
                result[key] = _wrap(key, sub, remaining[key])
            remaining.pop(key, None)
        if remaining:
            raise invalid_parameter(
                f"Unexpected keys ({', '.join(php_str(k) for k in remaining)}) detected in parameter array.")
        return result
    if isinstance(description, Multiple):
        if not isinstance(params, dict):
            raise invalid_parameter(f"Only arrays accepted. The bad value is: '{_php_print_r(params)}'")
        return [validate_parameters(description.content, item) for item in params.values()]
    raise TypeError(description)


def _wrap(key: str, sub: Any, value: Any) -> Any:
    from bufsync.sandbox.moodle.errors import WsError
    try:
        return validate_parameters(sub, value)
    except WsError as exc:
        if exc.errorcode != "invalidparameter":
            raise
        raise invalid_parameter(f"{key} => {exc.message}: {exc.debuginfo}") from None
