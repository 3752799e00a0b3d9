"""One place that knows every secret value, so no log line or error text can carry one.

Config registers each secret as it is loaded; `redact` replaces them (and URL passwords)
in any text that leaves the process: log records, exception texts, CLI output.
"""

from __future__ import annotations

import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
MASK = "***"

# user:password@ in URLs, for URLs that were never registered (e.g. typed on the command line).
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@\s]+)@")
# wstoken=... in Moodle request URLs or bodies; token=... in webservice/pluginfile.php URLs.
_WSTOKEN = re.compile(r"((?:\bws|[?&])token=)[^&\s\"']+")


def register(value: str | None) -> None:
    """Remember a secret; short values are ignored to avoid masking ordinary words."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}:{MASK}@", text)
    return _WSTOKEN.sub(lambda m: m.group(1) + MASK, text)
