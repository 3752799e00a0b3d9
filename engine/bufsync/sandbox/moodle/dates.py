"""Dates as Moodle 4.5 shows them (lib/classes/date.php, userdate() in lib/moodlelib.php), English only.

Every date Moodle writes as text is in the reading user's time zone: core_date::get_user_timezone() takes
$CFG->forcetimezone unless it is "99", else the user's own `timezone` unless "99", else the site's $CFG->timezone
(the admin action set_config changes the two settings, core_user_update_users a user's zone). A name zoneinfo does not
know is normalised as Moodle does: the legacy offsets ("5", "-3.0", "UTC+2", "4.5") become Etc/GMT zones (or the city
Moodle picks for a half hour), anything else the site's zone, else PHP's default (UTC).
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bufsync.sandbox.moodle.site import Site

STRFTIMEDAYDATETIME = "%A, %d %B %Y, %I:%M %p"  # userdate()'s default format (langconfig, English)
STRFTIMEDATEMONTHABBR = "%d %b %Y"
PHP_DEFAULT_TIMEZONE = "UTC"  # date.timezone of the lab's php.ini: what Moodle falls back on last
USE_USER_TIMEZONE = "99"

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_HALF_HOURS = {"4.5": "Asia/Kabul", "5.5": "Asia/Kolkata", "6.5": "Asia/Rangoon", "9.5": "Australia/Darwin"}
_LEGACY = re.compile(r"^(?:(?:UTC|GMT)(?=[+-])|)([+-]?\d+)(?:\.0)?$")


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _legacy_zone(tz: str) -> str | None:
    """core_date's "bad zones" for old numeric settings: whole hours -12..14 as Etc/GMT (signs reversed)."""
    if tz in _HALF_HOURS:
        return _HALF_HOURS[tz]
    match = _LEGACY.match(tz)
    if match is None:
        try:
            hours = int(float(tz))  # Moodle rounds other numbers to whole hours
        except ValueError:
            return None
    else:
        hours = int(match.group(1))
    if not -12 <= hours <= 14:
        return None
    return "Etc/GMT" if hours == 0 else f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}"


def normalise_timezone(site: Site, tz: Any) -> str:
    """core_date::normalise_timezone(): a zone PHP knows, else the legacy mapping, else the site's, else PHP's."""
    tz = str(tz)
    if tz in _zones():
        return tz
    legacy = _legacy_zone(tz)
    if legacy is not None and legacy in _zones():
        return legacy
    server = site.cfg("timezone")
    if server in _zones():
        return server
    return PHP_DEFAULT_TIMEZONE


def server_timezone(site: Site) -> str:
    """core_date::get_server_timezone(): $CFG->timezone, PHP's default when it is unset or "99"."""
    tz = site.cfg("timezone")
    return PHP_DEFAULT_TIMEZONE if tz in ("", USE_USER_TIMEZONE) else normalise_timezone(site, tz)


def user_timezone(site: Site, user: Any = None) -> str:
    """core_date::get_user_timezone(): forcetimezone, else the user's zone, else the site's.

    `user` is a user id, a row (anything with a "timezone" key), or None for the calling user (Moodle's $USER).
    """
    forced = site.cfg("forcetimezone")
    if forced != USE_USER_TIMEZONE:
        return normalise_timezone(site, forced)
    if user is None:
        user = getattr(site, "userid", 2)
    if isinstance(user, int):
        row = site.store.one("SELECT timezone FROM user WHERE id = ?", (user,))
        tz = str(row["timezone"]) if row is not None else USE_USER_TIMEZONE
    elif isinstance(user, Mapping) or hasattr(user, "keys"):
        tz = str(user["timezone"]) if "timezone" in user.keys() else USE_USER_TIMEZONE
    else:
        raise TypeError(f"a user id or row, not {user!r}")
    if tz == USE_USER_TIMEZONE:
        return server_timezone(site)
    return normalise_timezone(site, tz)


def strftime_en(moment: datetime, fmt: str) -> str:
    """PHP's strftime in English, whatever the machine's locale (what Moodle's langconfig formats use)."""
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        hour12 = moment.hour % 12 or 12
        values = {
            "A": _DAYS[moment.weekday()], "a": _DAYS[moment.weekday()][:3], "B": _MONTHS[moment.month - 1],
            "b": _MONTHS[moment.month - 1][:3], "d": f"{moment.day:02d}", "e": f"{moment.day:2d}",
            "H": f"{moment.hour:02d}", "I": f"{hour12:02d}", "M": f"{moment.minute:02d}", "m": f"{moment.month:02d}",
            "S": f"{moment.second:02d}", "Y": str(moment.year), "y": f"{moment.year % 100:02d}",
            "p": "AM" if moment.hour < 12 else "PM", "P": "am" if moment.hour < 12 else "pm", "%": "%",
        }
        if code not in values:
            raise ValueError(f"strftime %{code} is not emulated by the sandbox")
        return values[code]
    return re.sub(r"%(.)", one, fmt)


def userdate(site: Site, timestamp: int, user: Any = None, fmt: str = STRFTIMEDAYDATETIME, fixday: bool = True,
             fixhour: bool = True) -> str:
    """userdate($timestamp, $fmt) read by `user` (default: the calling user): in their zone, the day (%d) and the
    12-hour hour (%I) without a leading zero, e.g. "Saturday, 6 September 2025, 1:00 AM"."""
    moment = datetime.fromtimestamp(int(timestamp), zoneinfo.ZoneInfo(user_timezone(site, user)))
    if fixday:
        fmt = fmt.replace("%d", str(moment.day))
    if fixhour:
        fmt = fmt.replace("%I", str(moment.hour % 12 or 12))
    return strftime_en(moment, fmt)
