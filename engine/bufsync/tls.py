"""One TLS context for every HTTP client of a process: building one reads the CA bundle (~0.1 s), and a daemon or a
test suite opens clients to Moodle and the portals for every run. SSLContext is safe to share between threads."""

from __future__ import annotations

import functools
import ssl
from typing import Any


@functools.cache
def _context(verify: Any) -> ssl.SSLContext:
    import httpx
    return httpx.create_ssl_context(verify=verify)


def verify(value: bool | str = True) -> ssl.SSLContext:
    """What httpx.Client(verify=...) takes, as httpx would build it for `value` (True: the CA bundle, honouring
    SSL_CERT_FILE / SSL_CERT_DIR; False: no check; a path: that bundle), built once per value."""
    return _context(value)
