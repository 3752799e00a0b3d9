"""webservice/pluginfile.php: a stored file served to a web-service token, as Moodle 4.5 answers.

The script is an AJAX_SCRIPT: every refusal is HTTP 200 with Moodle's AJAX error body
{error, errorcode, stacktrace, debuginfo, reproductionlink}, except a file that is not found (send_file_not_found:
HTTP 404 with the same body). In order: the `token` parameter (GET or POST, PARAM_ALPHANUM; missing: missingparam),
the token and its user (invalidtoken, ...), the service's "Can download files" (accessexception), the path
(<contextid>/<component>/<filearea>/..., invalidargorconf / invalidarguments), the context (invalidrecord), then the
component's own callback (PLUGINFILE), which answers the file row or None (not found). A found file is always sent
as an attachment (assignsubmission_file forces the download), with its mimetype, ETag (its content hash) and
Last-Modified. Range requests are answered with the whole file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from bufsync.sandbox.moodle.errors import WsError, missing_record

if TYPE_CHECKING:
    from bufsync.sandbox.moodle.site import Response, Site

PATH = "/webservice/pluginfile.php"
AJAX_TYPE = "application/json; charset=utf-8"
# component -> callback(site, context row, filearea, args) -> the `files` row, or None (file not found)
PLUGINFILE: dict[str, Callable[[Site, Any, str, list[str]], Any]] = {}
# component -> the bytes of one of its `files` rows
CONTENT: dict[str, Callable[[Any], bytes]] = {}
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate", "Pragma": "no-cache",
            "Expires": "Mon, 20 Aug 1969 09:23:00 GMT", "Accept-Ranges": "none",
            "Access-Control-Allow-Origin": "*"}


def component(name: str) -> Callable:
    """Registers a component's <component>_pluginfile() callback."""
    def register(handler: Callable[[Site, Any, str, list[str]], Any]) -> Callable:
        PLUGINFILE[name] = handler
        return handler
    return register


class NotFound(Exception):
    """send_file_not_found(): HTTP 404 with the filenotfound error."""


def require_login(site: Site, courseid: int) -> None:
    """require_login($course, false, $cm): a site admin, or someone enrolled (or allowed to view the course)."""
    from bufsync.sandbox.moodle.functions import enrol
    context = enrol.course_context(site, courseid)
    if context is not None:
        enrol.validate_context(site, context)


def _error(site: Site, status: int, errorcode: str | None, message: str, debuginfo: str | None = None) -> Response:
    from bufsync.sandbox.moodle.site import Response
    body = {"error": message, "errorcode": errorcode, "stacktrace": None,
            "debuginfo": debuginfo if site.debug else None, "reproductionlink": None}
    return Response(status, AJAX_TYPE, json.dumps(body, separators=(",", ":")).replace("/", "\\/").encode(),
                    dict(NO_CACHE))


def serve(site: Site, path: str, pairs: list[tuple[str, str]]) -> Response:
    """One request to webservice/pluginfile.php<path>; pairs are the query string's and the POST body's fields."""
    from bufsync.sandbox.moodle.site import Response
    relative = unquote(path[len(PATH):]) if path.startswith(PATH) else ""
    tokens = [v for k, v in pairs if k == "token"]
    if not tokens:
        return _error(site, 200, "missingparam", "A required parameter (token) was missing")
    token = "".join(ch for ch in tokens[-1] if ch.isascii() and ch.isalnum())  # PARAM_ALPHANUM
    try:
        with site.lock:
            found = _lookup(site, token, relative)
            content = CONTENT[found["component"]](found)
    except NotFound:
        return _error(site, 404, "filenotfound", "Sorry, the requested file could not be found")
    except WsError as exc:
        return _error(site, 200, exc.errorcode, exc.message, exc.debuginfo)
    filename = str(found["filename"])
    headers = {"Access-Control-Allow-Origin": "*",
               # PHP sends the name's UTF-8 bytes as they are; the server writes header values as latin-1
               "Content-Disposition": f'attachment; filename="{filename}"'.encode().decode("latin-1"),
               "Cache-Control": "private, must-revalidate, pre-check=0, post-check=0, max-age=0, no-transform",
               "Expires": "Thu, 01 Jan 1970 00:00:00 GMT", "Pragma": "no-cache",
               "Etag": f'"{hashlib.sha1(content).hexdigest()}"', "Accept-Ranges": "bytes",
               "Last-Modified": formatdate(int(found["timemodified"]), usegmt=True)}
    return Response(200, str(found["mimetype"]), content, headers)


def _lookup(site: Site, token: str, relative: str) -> Any:
    """The file row the request names, or NotFound / WsError as Moodle refuses it."""
    site.authenticate(token)
    if not site.download_files():
        raise WsError("webservice_access_exception", "accessexception", "Access control exception",
                      "Web service file downloading must be enabled in external service settings")
    relative = relative.lstrip("/")
    if not relative:
        raise WsError("core\\exception\\moodle_exception", "invalidargorconf",
                      "No valid arguments supplied or incorrect server configuration")
    args = relative.split("/")
    if len(args) < 3:
        raise WsError("core\\exception\\moodle_exception", "invalidarguments", "No valid arguments supplied")
    head = args.pop(0)
    contextid = int(head) if head.isdigit() else 0
    component_name, filearea = args.pop(0), args.pop(0)
    context = site.store.one("SELECT * FROM context WHERE id = ?", (contextid,))
    if context is None:
        raise missing_record("invalidrecord", "Can't find data record in database table context.", "context",
                             "id = ?", [contextid])
    handler = PLUGINFILE.get(component_name)
    if handler is None:
        raise NotFound()
    found = handler(site, context, filearea, args)
    if found is None:
        raise NotFound()
    return found
