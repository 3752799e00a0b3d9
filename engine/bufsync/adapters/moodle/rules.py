"""Moodle's own validation rules, known locally so a 1C developer learns the real reason
even when a production Moodle only says `invalidparameter`. The sandbox enforces the same
rules from here, so client and emulator cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# validate_email(): Moodle 4.5 asks PHPMailer, whose default validator is PHP's filter_var(FILTER_VALIDATE_EMAIL),
# then refuses angle brackets. The same shapes: a dot-atom local part of at most 64 characters, at most 254 in all,
# domain labels of at most 63 without a leading or trailing hyphen, a last label that starts with a letter.
_EMAIL = re.compile(
    r"^(?=[^@]{1,64}@)(?=.{1,254}\Z)[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:(?:xn--)?[a-z0-9]{1,63}(?:-+[a-z0-9]+)*\.)+(?:[a-z][a-z0-9]*|xn--[a-z0-9]+)(?:-+[a-z0-9]+)*\Z",
    re.I | re.ASCII)


def validate_email(address: str | None) -> bool:
    """True when Moodle accepts the address (quoted local parts aside, which it accepts and this refuses)."""
    if not address or not _EMAIL.match(address) or re.search(r"[<>]", address):
        return False
    return all(len(label) <= 63 for label in address.rsplit("@", 1)[1].split("."))


def clean_username(value: str, extended: bool = False) -> str:
    """clean_param(PARAM_USERNAME): what Moodle would keep of a login."""
    value = value.strip().lower()
    if extended:
        return re.sub(r"[\x00-\x1f\x7f<>&\"']", "", value)
    value = value.replace(" ", "")
    return re.sub(r"[^-.@_a-z0-9]", "", value)


@dataclass
class PasswordPolicy:
    """The site's password policy (Site administration > Security > Site security settings)."""

    enabled: bool = True
    min_length: int = 8
    min_digits: int = 1
    min_lower: int = 1
    min_upper: int = 1
    min_special: int = 1

    def errors(self, password: str) -> list[str]:
        """Moodle's own texts (check_password_policy), one <div> per broken rule."""
        if not self.enabled:
            return []
        out = []
        if len(password) < self.min_length:
            out.append(f"<div>Passwords must be at least {self.min_length} characters long.</div>")
        if sum(c.isdigit() for c in password) < self.min_digits:
            out.append(f"<div>Passwords must have at least {self.min_digits} digit(s).</div>")
        if sum(c.islower() for c in password) < self.min_lower:
            out.append(f"<div>Passwords must have at least {self.min_lower} lower case letter(s).</div>")
        if sum(c.isupper() for c in password) < self.min_upper:
            out.append(f"<div>Passwords must have at least {self.min_upper} upper case letter(s).</div>")
        if sum((not c.isalnum()) for c in password) < self.min_special:
            out.append(f"<div>The password must have at least {self.min_special} special character(s) "
                       "such as *, -, or #.</div>")
        return out

    def errors_ru(self, password: str) -> list[str]:
        if not self.enabled:
            return []
        out = []
        if len(password) < self.min_length:
            out.append(f"не короче {self.min_length} символов")
        if sum(c.isdigit() for c in password) < self.min_digits:
            out.append(f"цифр не меньше {self.min_digits}")
        if sum(c.islower() for c in password) < self.min_lower:
            out.append(f"строчных латинских букв не меньше {self.min_lower}")
        if sum(c.isupper() for c in password) < self.min_upper:
            out.append(f"заглавных латинских букв не меньше {self.min_upper}")
        if sum((not c.isalnum()) for c in password) < self.min_special:
            out.append(f"спецсимволов (*, -, # ...) не меньше {self.min_special}")
        return out


# --- text parameters: PARAM_NOTAGS and PARAM_TEXT refuse (not clean) a value that has tags ------------------------
# external_api::validate_parameters() cleans each value and refuses it when cleaning changed it
# (core\param::validate_param), so «Иван <b>» is refused while «a < b» passes: PHP's strip_tags decides.

_SPACE = " \t\n\v\f\r"


def _tag_allowed(tag: str, allow: frozenset[str]) -> bool:
    """php_tag_find(): <a href="..">, </a> and <a/> all normalise to <a>, looked for in the allowed set."""
    norm = []
    started = False
    for t, c in enumerate(tag.lower()):
        if c == "<":
            norm.append(c)
        elif c == ">":
            break
        elif c not in _SPACE:
            started = True
            if c != "/" or (tag[t - 1] != "<" and tag[t + 1:t + 2] != ">"):
                norm.append(c)
        elif started:
            break
    return "".join(norm) + ">" in "".join(f"<{name}>" for name in sorted(allow))


def strip_tags(text: str, allow: frozenset[str] = frozenset()) -> str:
    """PHP 8's strip_tags() (php_strip_tags_ex), state machine for state machine; allow: tag names kept.

    Checked against PHP 8.2 on 40,000 random strings of <, >, !, ?, -, quotes and letters.
    """
    out: list[str] = []
    tag: list[str] = []
    n = len(text)
    state = depth = br = 0
    in_q = lc = ""
    is_xml = False

    def at(k: int) -> str:
        return text[k] if 0 <= k < n else "\0"

    for i, c in enumerate(text):
        if state == 0:  # outside tags
            if c == "<":
                if not in_q:
                    if at(i + 1) in _SPACE:
                        out.append(c)  # "a < b": not a tag
                    else:
                        lc, state, tag = "<", 1, ["<"]
            elif c == ">":
                if depth:
                    depth -= 1
                elif not in_q:
                    out.append(c)
            elif c != "\0":
                out.append(c)
        elif state == 1:  # inside <tag ...>
            if c == "<":
                if in_q:
                    pass
                elif at(i + 1) in _SPACE:
                    tag.append(c)
                else:
                    depth += 1
            elif c == ">":
                if depth:
                    depth -= 1
                elif not in_q:
                    lc = ">"
                    if not (is_xml and at(i - 1) == "-"):
                        in_q, state, is_xml = "", 0, False
                    if allow:
                        tag.append(">")
                        if _tag_allowed("".join(tag), allow):
                            out.extend(tag)
                        tag = []
            elif c == "!" and at(i - 1) == "<":
                state, lc = 3, c
            elif c == "?" and at(i - 1) == "<":
                br, state = 0, 2
            elif c != "\0":
                if c in "\"'" and i != 0 and (not in_q or c == in_q):
                    in_q = "" if in_q else c
                tag.append(c)
        elif state == 2:  # inside <? ... ?>
            if c == "(":
                if lc not in "\"'":
                    lc, br = "(", br + 1
            elif c == ")":
                if lc not in "\"'":
                    lc, br = ")", br - 1
            elif c == ">":
                if depth:
                    depth -= 1
                elif not in_q and not br and lc != '"' and at(i - 1) == "?":
                    in_q, state = "", 0
            elif c in "\"'":
                if i >= 1 and at(i - 1) != "\\":
                    if lc == c:
                        lc = ""
                    elif lc != "\\":
                        lc = c
                    if not in_q or c == in_q:
                        in_q = "" if in_q else c
            elif c in "lL" and i > 4 and at(i - 1) in "mM" and at(i - 2) in "xX" and text[i - 4:i - 2] == "<?":
                state, is_xml = 1, True
        elif state == 3:  # inside <! ... >
            if c == ">":
                if depth:
                    depth -= 1
                elif not in_q:
                    in_q, state = "", 0
            elif c in "\"'":
                if i != 0 and at(i - 1) != "\\" and (not in_q or c == in_q):
                    in_q = "" if in_q else c
            elif c == "-":
                if i >= 2 and text[i - 2:i] == "!-":
                    state = 4
            elif c in "eE" and i > 6 and text[i - 6:i].lower() == "doctyp":
                state = 1
        elif c == ">" and not in_q and i >= 2 and text[i - 2:i] == "--":  # state 4: <!-- ... -->
            in_q, state = "", 0
    return "".join(out)


def fix_utf8(text: str) -> str:
    """fix_utf8(): drops NUL and the non-characters U+FFFE / U+FFFF (invalid UTF-8 never reaches Python)."""
    return text.replace("\0", "").replace("\ufffe", "").replace("\uffff", "")


_MULTILANG = (("lang", re.compile(r'^<lang lang="[a-zA-Z0-9_-]+"\s*>$')),
              ("span", re.compile(r'^<span(\s+lang="[a-zA-Z0-9_-]+"|\s+class="multilang"){2}\s*>$')))


def clean_notags(text: str) -> str:
    """clean_param(PARAM_NOTAGS)."""
    return strip_tags(fix_utf8(text))


def clean_text(text: str) -> str:
    """clean_param(PARAM_TEXT): tags stripped, except well-formed multilang <lang>/<span> blocks."""
    text = fix_utf8(text)
    for name, opening in _MULTILANG:
        closing = f"</{name}>"
        if closing not in text:
            continue
        kept = strip_tags(text, frozenset({name}))
        tags = re.findall(r"<.*?>", kept, re.S)
        is_open = False
        for tag in tags:
            if tag == closing and is_open:
                is_open = False
            elif tag != closing and opening.match(tag):
                is_open = True
            else:
                break
        else:
            if tags and not is_open:
                return kept
        break  # only the first syntax present is tried, as in core\param
    return strip_tags(text)


def removed_markup(value: str, kind: str) -> str | None:
    """What Moodle's cleaning would remove from a text value (the value is then refused), or None."""
    cleaned = clean_notags(value) if kind == "notags" else clean_text(value)
    if cleaned == value:
        return None
    tags = re.findall(r"<[^<>]*>?", value)
    return ", ".join(dict.fromkeys(tags)) if tags else value


# --- auth plugins -------------------------------------------------------------------------------------------------

# The auth plugins of a standard Moodle 4.5 (core_component::get_plugin_list('auth') on the real site).
STANDARD_AUTH_PLUGINS = ("manual", "nologin", "email", "cas", "db", "ldap", "lti", "mnet", "none", "oauth2",
                         "shibboleth", "webservice")
# core_user_create_users refuses these two for new users ("Invalid authentication type").
NOT_FOR_NEW_USERS = ("mnet", "webservice")
_PLUGIN_NAME = re.compile(r"^[a-z](?:[a-z0-9_](?!__))*[a-z0-9]+$")


def is_plugin_name(value: str) -> bool:
    """is_valid_plugin_name(): what PARAM_AUTH accepts before asking whether the plugin is installed."""
    return bool(_PLUGIN_NAME.match(value))


# --- what Moodle's columns hold -----------------------------------------------------------------------------------
# varchar lengths in characters, read from the real Moodle 4.5 database (mdl_user, mdl_course,
# mdl_course_categories, mdl_cohort, mdl_groups). Moodle checks none of the user and course ones itself:
# a longer value fails the INSERT/UPDATE and the answer is only dmlwriteexception.
USER_COLUMNS = {
    "auth": 20, "username": 100, "idnumber": 255, "firstname": 100, "lastname": 100, "email": 100, "phone1": 20,
    "phone2": 20, "institution": 255, "department": 255, "address": 255, "city": 120, "country": 2, "lang": 30,
    "calendartype": 30, "theme": 50, "timezone": 100, "middlename": 255, "alternatename": 255,
    "firstnamephonetic": 255, "lastnamephonetic": 255,
}
COURSE_COLUMNS = {"fullname": 254, "shortname": 255, "idnumber": 100, "format": 21, "lang": 30, "calendartype": 30,
                  "theme": 50}
CATEGORY_COLUMNS = {"name": 255, "idnumber": 100, "theme": 50}   # Moodle checks these two itself (…toolong)
COHORT_COLUMNS = {"name": 254, "idnumber": 100}
GROUP_COLUMNS = {"name": 254, "idnumber": 100, "enrolmentkey": 50}

# The PARAM_* type of each text field (core_user::fill_properties_cache, the external functions' parameters).
USER_TEXT_TYPES = {
    "firstname": "notags", "lastname": "notags", "middlename": "notags", "alternatename": "notags",
    "firstnamephonetic": "notags", "lastnamephonetic": "notags", "phone1": "notags", "phone2": "notags",
    "institution": "text", "department": "text", "address": "text", "city": "text",
}
COURSE_TEXT_TYPES = {"fullname": "text", "shortname": "text"}
CATEGORY_TEXT_TYPES = {"name": "text"}


@dataclass(frozen=True)
class FieldProblem:
    """One field Moodle would refuse, with what was found and what is allowed."""

    field: str
    kind: str          # "toolong" or "markup"
    found: str         # the markup found, or the length
    limit: int | None = None


def field_problem(record: dict, text_types: dict[str, str], columns: dict[str, int]) -> FieldProblem | None:
    """The first text field with tags (refused by validate_parameters) or longer than its column."""
    for name, kind in text_types.items():
        value = record.get(name)
        if isinstance(value, str):
            removed = removed_markup(value, kind)
            if removed is not None:
                return FieldProblem(name, "markup", removed)
    for name, limit in columns.items():
        value = record.get(name)
        if isinstance(value, str) and len(value) > limit:
            return FieldProblem(name, "toolong", str(len(value)), limit)
    return None
