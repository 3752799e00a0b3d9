"""Moodle's own validation rules, known locally so a 1C developer learns the real reason
even when a production Moodle only says `invalidparameter`. The sandbox enforces the same
rules from here, so client and emulator cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# validate_email(): PHPMailer's check as Moodle 4.5 uses it, plus no angle brackets
_EMAIL = re.compile(
    r"^(?!\.)[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", re.I)


def validate_email(address: str | None) -> bool:
    return bool(address) and bool(_EMAIL.match(address or "")) and not re.search(r"[<>]", address or "")


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
