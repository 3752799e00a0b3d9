"""Response bodies exactly as Moodle's REST server writes them: PHP json_encode, or its XML."""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape

from bufsync.sandbox.moodle.errors import WsError
from bufsync.sandbox.moodle.params import Multiple, Single

JSON_TYPE = "application/json"
XML_TYPE = "application/xml; charset=utf-8"


def php_json(value: Any) -> bytes:
    """json_encode: compact, non-ASCII as \\uXXXX, '/' escaped as '\\/'."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("/", "\\/").encode("ascii")


def error_json(error: WsError, debug: bool) -> bytes:
    body: dict[str, Any] = {"exception": error.exception, "errorcode": error.errorcode, "message": error.message}
    if error.errorcode is None:
        body.pop("errorcode")
    if debug and error.debuginfo:
        body["debuginfo"] = error.debuginfo
    return php_json(body)


def _xml_scalar(value: Any) -> str:
    if value is None:
        return '<VALUE null="null"/>\n'
    if isinstance(value, bool):
        value = 1 if value else 0
    return f"<VALUE>{escape(str(value))}</VALUE>\n"


def _xml(value: Any, description: Any = None) -> str:
    if isinstance(description, Single) or (description is None and isinstance(value, dict)):
        keys = list(description.keys) if isinstance(description, Single) else list(value)
        out = "<SINGLE>\n"
        for key in keys:
            sub = description.keys[key] if isinstance(description, Single) else None
            item = value.get(key) if isinstance(value, dict) else None
            if item is None and isinstance(sub, Multiple):
                item = []
            out += f'<KEY name="{escape(str(key))}">{_xml(item, sub)}</KEY>\n'
        return out + "</SINGLE>\n"
    if isinstance(description, Multiple) or (description is None and isinstance(value, list)):
        content = description.content if isinstance(description, Multiple) else None
        return "<MULTIPLE>\n" + "".join(_xml(item, content) for item in (value or [])) + "</MULTIPLE>\n"
    return _xml_scalar(value)


def php_xml(value: Any, description: Any = None) -> bytes:
    body = "" if value is None and description is None else _xml(value, description)
    if value is None and description is None:
        body = ""
    return f'<?xml version="1.0" encoding="UTF-8" ?>\n<RESPONSE>\n{body}</RESPONSE>\n'.encode()


def error_xml(error: WsError, debug: bool) -> bytes:
    out = f'<?xml version="1.0" encoding="UTF-8" ?>\n<EXCEPTION class="{escape(error.exception)}">\n'
    out += f"<ERRORCODE>{escape(error.errorcode or '')}</ERRORCODE>\n<MESSAGE>{escape(error.message)}</MESSAGE>\n"
    if debug and error.debuginfo:
        out += f"<DEBUGINFO>{escape(error.debuginfo)}</DEBUGINFO>\n"
    return (out + "</EXCEPTION>\n").encode("utf-8")


