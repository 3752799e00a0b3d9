"""Tokens and core_webservice_get_site_info."""

from __future__ import annotations

import json
from typing import Any

from bufsync.sandbox.moodle.params import VALUE_DEFAULT, Multiple, Value
from bufsync.sandbox.moodle.site import RELEASE, SERVICE_FUNCTIONS, VERSION, Site, admin_action, ws_function
from bufsync.sandbox.moodle.store import schema

schema("""
CREATE TABLE IF NOT EXISTS ws_token (token TEXT PRIMARY KEY, userid INTEGER NOT NULL, validuntil INTEGER NOT NULL);
""")

ADVANCED_FEATURES = [
    ("usecomments", 1), ("usetags", 1), ("enablenotes", 1), ("messaging", 1), ("enableblogs", 1),
    ("enablecompletion", 1), ("enablebadges", 1), ("messagingallusers", 0), ("enablecustomreports", 1),
    ("enableglobalsearch", 0), ("mnet_dispatcher_mode", 0), ("enablecompetencies", 1),
]


def theme_url(site: Site, image: str) -> str:
    rev = site.store.one("SELECT value FROM sandbox_config WHERE name = 'themerev'")
    return f"{site.config.site_url}/theme/image.php/boost/core/{rev['value'] if rev else 0}/{image}"


@admin_action("add_token")
def add_token(site: Site, token: str, userid: int = 2, validuntil: int = 0) -> dict[str, Any]:
    """A token of another user or one that expires (validuntil in the past: expired)."""
    site.store.x("INSERT OR REPLACE INTO ws_token (token, userid, validuntil) VALUES (?, ?, ?)",
                 (token, userid, validuntil))
    return {"token": token}


@admin_action("service")
def set_service(site: Site, enabled: bool | None = None, remove: list[str] | None = None,
                add: list[str] | None = None, rest: bool | None = None,
                downloadfiles: bool | None = None) -> dict[str, Any]:
    """What an admin does under Site administration > Server > Web services: disable the service, take functions
    out of it (and put them back), turn web services / the REST protocol off (rest=False: every call gets 403),
    let the service download files (downloadfiles=True: webservice/pluginfile.php serves its tokens)."""
    row = site.store.one("SELECT value FROM sandbox_config WHERE name = 'service'")
    state = {"enabled": True, "removed": [], "rest": True, "downloadfiles": False} | (
        json.loads(row["value"]) if row else {})
    if enabled is not None:
        state["enabled"] = bool(enabled)
    if downloadfiles is not None:
        state["downloadfiles"] = bool(downloadfiles)
    if rest is not None:
        state["rest"] = bool(rest)
    known = dict(SERVICE_FUNCTIONS)
    for name in (remove or []) + (add or []):
        if name not in known:
            raise KeyError(f"{name} is not a function of the recorded service")
    state["removed"] = sorted((set(state["removed"]) | set(remove or [])) - set(add or []))
    site.store.x("INSERT OR REPLACE INTO sandbox_config (name, value) VALUES ('service', ?)", (json.dumps(state),))
    return state


@ws_function("core_webservice_get_site_info",
             {"serviceshortnames": Multiple(Value("alphanumext"), VALUE_DEFAULT, [])})
def get_site_info(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    user = site.store.row("SELECT * FROM user WHERE id = ?", (site.userid,))
    return {
        "sitename": site.config.sitename,
        "username": user["username"],
        "firstname": user["firstname"],
        "lastname": user["lastname"],
        "fullname": f"{user['firstname']} {user['lastname']}",
        "lang": "en",
        "userid": user["id"],
        "siteurl": site.config.site_url,
        "userpictureurl": theme_url(site, "u/f1"),
        "functions": [{"name": name, "version": version} for name, version in site.service_functions()],
        "downloadfiles": int(site.download_files()),
        "uploadfiles": 0,
        "release": RELEASE,
        "version": VERSION,
        "mobilecssurl": "",
        "advancedfeatures": [{"name": n, "value": v} for n, v in ADVANCED_FEATURES],
        "usercanmanageownfiles": True,
        "userquota": 0,
        "usermaxuploadfilesize": -1,
        "userhomepage": 1,
        "userprivateaccesskey": "<redacted: 32-char private access key>",
        "siteid": 1,
        "sitecalendartype": "gregorian",
        "usercalendartype": "gregorian",
        "userissiteadmin": True,
        "theme": "boost",
        "limitconcurrentlogins": 0,
        "policyagreed": 0,
    }
