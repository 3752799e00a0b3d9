"""tool_mobile_get_config: the site settings the mobile app reads (admin/tool/mobile/classes/api.php get_config()),
by section; bufsync reads `locationsettings` (the site's time zone) to know how the report builder's dates are shown.

Settings other than the time zone have a fresh Moodle 4.5's values (the lab site's), the site's names and its admin's
contact from the sandbox itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bufsync.sandbox.moodle.functions.categories import format_string, format_text
from bufsync.sandbox.moodle.params import VALUE_DEFAULT, Multiple, Single, Value
from bufsync.sandbox.moodle.site import Site, ws_function

_CUSTOMUSERMENUITEMS = "\n".join([
    "profile,moodle|/user/profile.php", "grades,grades|/grade/report/mygrades.php",
    "calendar,core_calendar|/calendar/view.php?view=month", "privatefiles,moodle|/user/files.php",
    "reports,core_reportbuilder|/reportbuilder/index.php"])
_COURSECOLORS = ("#81ecec", "#74b9ff", "#a29bfe", "#dfe6e9", "#00b894", "#0984e3", "#b2bec3", "#fdcb6e", "#fd79a8",
                 "#6c5ce7")


def _frontpage(site: Site) -> dict[str, Any]:
    course = site.store.row("SELECT * FROM course WHERE id = 1")
    sections = site.store.row("SELECT MAX(section) AS n FROM course_sections WHERE course = 1")["n"]
    summary, summaryformat = format_text(course["summary"] or "", course["summaryformat"])
    out: dict[str, Any] = {
        "fullname": format_string(course["fullname"]), "shortname": format_string(course["shortname"]),
        "summary": summary, "summaryformat": str(summaryformat), "frontpage": "6", "frontpageloggedin": "6",
        "maxcategorydepth": "2", "frontpagecourselimit": "200", "numsections": int(sections or 0),
        "newsitems": str(course["newsitems"]), "commentsperpage": "15"}
    if getattr(site, "userid", 2) == 2:  # has_capability('moodle/site:config'): site admins only
        out["defaultfrontpageroleid"] = "8"
    return out


def _support(site: Site) -> dict[str, Any]:
    admin = site.store.row("SELECT firstname, lastname, email FROM user WHERE id = 2")
    return {"supportavailability": "1", "supportname": f"{admin['firstname']} {admin['lastname']}",
            "supportemail": admin["email"], "supportpage": ""}


# api::get_config()'s sections in its order; each gives its settings (an empty or unknown section: all / none).
SECTIONS: list[tuple[tuple[str, ...], Callable[[Site], dict[str, Any]]]] = [
    (("frontpagesettings",), _frontpage),
    (("sitepolicies",), lambda site: {"sitepolicy": "", "sitepolicyhandler": "", "disableuserimages": "0"}),
    (("gradessettings",), lambda site: {"mygradesurl": f"{site.config.site_url}/grade/report/overview/index.php"}),
    (("mobileapp",), lambda site: {
        "tool_mobile_forcelogout": "0", "tool_mobile_customlangstrings": "", "tool_mobile_disabledfeatures": "",
        "tool_mobile_filetypeexclusionlist": "", "tool_mobile_custommenuitems": "", "tool_mobile_apppolicy": "",
        "tool_mobile_autologinmintimebetweenreq": "360", "tool_mobile_autologout": "0",
        "tool_mobile_autologouttime": "86400"}),
    (("calendar",), lambda site: {
        "calendartype": "gregorian", "calendar_site_timeformat": "0", "calendar_startwday": "1",
        "calendar_adminseesall": "0", "calendar_lookahead": "21", "calendar_maxevents": "10"}),
    (("coursecolors",), lambda site: {f"core_admin_coursecolor{i}": c for i, c in enumerate(_COURSECOLORS, 1)}),
    (("supportcontact",), _support),
    (("graceperiodsettings",), lambda site: {"coursegraceperiodafter": "0", "coursegraceperiodbefore": "0"}),
    (("navigation",), lambda site: {"enabledashboard": "1"}),
    (("themesettings", "themesettingsadvanced"), lambda site: {"customusermenuitems": _CUSTOMUSERMENUITEMS}),
    (("locationsettings",), lambda site: {"timezone": site.cfg("timezone"),
                                          "forcetimezone": site.cfg("forcetimezone")}),
    (("manageglobalsearch",), lambda site: {
        "searchengine": "simpledb", "searchenablecategories": "0", "searchdefaultcategory": "core-all",
        "searchhideallcategory": "0", "searchmaxtopresults": "3", "searchbannerenable": "0", "searchbanner": ""}),
    (("privacysettings",), lambda site: {"tool_dataprivacy_contactdataprotectionofficer": "0",
                                         "tool_dataprivacy_showdataretentionsummary": "1"}),
    (("blog",), lambda site: {"useblogassociations": "1", "bloglevel": "4", "blogusecomments": "1"}),
]


@ws_function("tool_mobile_get_config", {"section": Value("alphanumext", VALUE_DEFAULT, "")},
             returns=Single({"settings": Multiple(Single({"name": Value("raw"), "value": Value("raw")})),
                             "warnings": Multiple(Single({k: Value("raw") for k in
                                                          ("item", "itemid", "warningcode", "message")}))}),
             version="2024042200")
def get_config(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """{"settings": [{"name", "value"}...], "warnings": []}: one section's settings, all of them without one."""
    section = params["section"]
    settings: dict[str, Any] = {}
    for names, values in SECTIONS:
        if not section or section in names:
            settings.update(values(site))
    return {"settings": [{"name": k, "value": v} for k, v in settings.items()], "warnings": []}
